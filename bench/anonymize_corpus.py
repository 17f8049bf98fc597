"""Anonymize every DICOM file of a corpus, one file at a time, and count what leaks.

The corpora, the leak oracle and the classes every file ends in (unreadable, non_image, not_writable,
refused, anonymized) are ``covidct.testing.leaks``'s, which the tests run too; its docstring (below in
--help) says them.

    python bench/anonymize_corpus.py [--corpus ct|pydicom|both] [--dates shift|remove] [--verbose]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from covidct.testing import leaks

REPO = Path(__file__).resolve().parents[1]
CT_CORPUS = REPO.parent / "shared" / "data" / "ct"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=f"{__doc__}\n{leaks.__doc__}", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--corpus", choices=("ct", "pydicom", "both"), default="both")
    ap.add_argument("--dates", choices=("shift", "remove"), default="shift")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    corpora = []
    if a.corpus in ("ct", "both"):
        if CT_CORPUS.is_dir():
            corpora.append(("shared/data/ct", leaks.ct_files(CT_CORPUS)))
        else:
            print(f"shared/data/ct: not present at {CT_CORPUS}, skipped")
    if a.corpus in ("pydicom", "both"):
        corpora.append(("pydicom test files", leaks.pydicom_files()))
    failed = False
    for name, files in corpora:
        summary = leaks.run_corpus(name, files, a.dates, a.verbose).summary()
        print(f"{name}:")
        for k, v in summary.items():
            if k != "corpus":
                print(f"  {k}: {v}")
        failed |= bool(summary["leaks"] or summary["pixel_changed"])
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
