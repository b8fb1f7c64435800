"""Imports specs declared elsewhere: only the one listed in verification_specs is this module's."""

from good_ops import SCALE, Cube  # noqa: F401  (imported, so not this module's specs)

from verification import Input, Spec

verification_specs = [Cube]

LOCAL = Spec(lambda x: x.sin(), inputs=[Input((2,))], name="Sine", reference=lambda x: x.sin())
