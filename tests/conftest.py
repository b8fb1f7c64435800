"""pytester: the verification plugin's tests run pytest on generated test files."""

pytest_plugins = ["pytester"]
