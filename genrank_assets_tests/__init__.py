"""genrank's tests, folder by folder as the package: defs/ (the code location), tools/, ml/; whole-package checks here."""
from pathlib import Path

BAD_ROWS = Path(__file__).resolve().parent / "fixtures" / "bad_rows"  # seed-format files with planted malformed rows
