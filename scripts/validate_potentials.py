"""The full property benchmark of the shipped potentials, kept in data/benchmarks/.

    .venv/bin/python scripts/validate_potentials.py [metals] [organic] [--potential FILE --tag TAG]

For ``metals`` (``tensornet-metals-emt`` against ASE EMT) and ``organic``
(``tensornet-organic-gfn2`` against GFN2-xTB), runs ``atomml.validation.validate`` in full on
one CPU thread and writes ``data/benchmarks/validation_<name>[_<tag>].json`` (the rows, the
summary, the versions) and the figures under ``data/benchmarks/validation/<name>[_<tag>]/``.
``--potential`` benchmarks another file (e.g. the version-1 potential, ``--tag v1``, for the
before/after table); ``scripts/write_model_cards.py`` puts the shipped file's table on its card.
Prints the markdown table and a JSON summary line per potential.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from atomml.threads import set_threads  # noqa: E402
from atomml.validation import validate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
POTENTIALS = {"metals": ("tensornet-metals-emt", "emt"), "organic": ("tensornet-organic-gfn2", "xtb")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="*", choices=sorted(POTENTIALS), default=sorted(POTENTIALS))
    parser.add_argument("--potential", help="a potential file to benchmark instead of the shipped one (one `which`)")
    parser.add_argument("--tag", default="", help="suffix of the output names, e.g. v1")
    parser.add_argument("--quick", action="store_true", help="the CI setting (a smoke run)")
    args = parser.parse_args()
    if args.potential and len(args.which) != 1:
        parser.error("--potential needs exactly one of metals / organic")
    set_threads(1)
    for which in args.which:
        name, reference = POTENTIALS[which]
        stem = f"validation_{name}" + (f"_{args.tag}" if args.tag else "")
        figures = ROOT / "data" / "benchmarks" / "validation" / stem.removeprefix("validation_")
        shutil.rmtree(figures, ignore_errors=True)
        report = validate(args.potential or name, reference, quick=args.quick, output=figures,
                          progress=lambda message: print(f"[{name}] {message} ...", flush=True))
        data = report.to_dict()
        data["potential_file"] = str(Path(args.potential).resolve().relative_to(ROOT)) if args.potential else name
        (figures / "validation.json").unlink()  # the JSON lives one level up, under its own name
        out = ROOT / "data" / "benchmarks" / f"{stem}.json"
        out.write_text(json.dumps(data, indent=1) + "\n")
        print(report.markdown())
        print(json.dumps({"potential": name, "file": data["potential_file"], "output": str(out.relative_to(ROOT)),
                          **report.summary, "elapsed_s": round(report.elapsed_s, 1)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
