"""What the longer CLI commands do (`pictor batch run`, `pictor dataset`), apart from argument parsing."""
