"""Self-contained HTML reports of verification, benchmark and training results."""
