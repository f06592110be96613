"""Command line: `python -m dataset_builder {validate,stats,export,import} ...`.

python -m dataset_builder validate DATA_DIR [--report bad_rows.csv]
python -m dataset_builder stats DATA_DIR --output_dir OUT [--no_plots]
python -m dataset_builder export DATA_DIR --output_dir OUT [--push_to_hub user/risc] [--skip_invalid]
python -m dataset_builder import FORMAT SRC [SRC ...] --images IMG_DIR --output_dir OUT [--source S] [--split S]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .builder import CONFIG_NAMES, load_risc
from .importers import FORMATS, RISCImportError, import_annotations
from .validation import RISCValidationError, validate_risc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dataset_builder", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check every row; exit 1 and list the problems if any")
    validate.add_argument("data_dir", help="RISC folder")
    validate.add_argument("--report", default=None, help="also write the problems to this CSV file")

    stats = commands.add_parser("stats", help="statistics: stats.json, PNG plots and a short table")
    stats.add_argument("data_dir", help="RISC folder")
    stats.add_argument("--output_dir", required=True, help="where stats.json and the plots go")
    stats.add_argument("--no_plots", action="store_true", help="write stats.json only")

    export = commands.add_parser("export", help="Parquet shards + dataset card, and/or push to the Hub")
    export.add_argument("data_dir", help="RISC folder: captions.csv and resized/ (or imgs/, images/)")
    export.add_argument("--config", default="all", choices=CONFIG_NAMES, help="which sources to load")
    export.add_argument("--skip_invalid", action="store_true", help="skip invalid rows (reported) instead of failing")
    export.add_argument("--cache_dir", default=None, help="datasets cache root (default: HF_DATASETS_CACHE)")
    export.add_argument("--output_dir", default=None, help="folder for data/<source>/<split>-*.parquet + README.md")
    export.add_argument("--push_to_hub", default=None, metavar="REPO", help="also push to this Hub dataset repo")
    export.add_argument("--hub_configs", default="all", help="comma-separated configs to push (default: all)")
    export.add_argument("--private", action="store_true", help="create the Hub repo as private")
    export.add_argument("--max_shard_size", type=int, default=500 * 2**20, help="bytes per Parquet shard")

    importer = commands.add_parser("import", help="write a RISC folder from Karpathy/COCO/NWPU/Flickr8k/CSV/JSONL")
    importer.add_argument("format", choices=sorted(FORMATS), help="annotation format")
    importer.add_argument("sources", nargs="+", metavar="SRC", help="annotation file(s) (nwpu_lines: the folder)")
    importer.add_argument("--images", required=True, help="folder with the images (searched recursively)")
    importer.add_argument("--output_dir", required=True, help="RISC folder to write")
    importer.add_argument("--source", default=None, help="NWPU, RSICD, UCM or SYDNEY (default: from the file)")
    importer.add_argument("--split", default=None, help="force train/val/test for every image")
    importer.add_argument("--size", type=int, default=224, help="output side in pixels (0 keeps the size)")
    importer.add_argument("--limit", type=int, default=None, help="first N images of each file only")
    importer.add_argument("--image_column", default=None, help="csv/jsonl: the column holding the image name")
    importer.add_argument("--skip_invalid", action="store_true", help="skip bad entries (reported) instead of failing")
    importer.add_argument("--append", action="store_true", help="add to an existing RISC folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "validate":
            report = validate_risc(args.data_dir)
            if args.report:
                report.write_csv(args.report)
            if not report.ok:
                print(report.format(), file=sys.stderr)
                return 1
            print(f"{len(report.rows)} rows of {args.data_dir} are valid")
        elif args.command == "stats":
            from .stats import write_stats
            from .stats_report import format_table

            stats, written = write_stats(args.data_dir, args.output_dir, plots=not args.no_plots)
            print(format_table(stats))
            print("wrote: " + ", ".join(str(path) for path in written))
        elif args.command == "export":
            if not args.output_dir and not args.push_to_hub:
                raise ValueError("export needs --output_dir and/or --push_to_hub REPO. Fix: pass one of them.")
            from .export import counts, export_parquet, push_to_hub

            dataset = load_risc(args.data_dir, args.config, skip_invalid=args.skip_invalid, cache_dir=args.cache_dir)
            if args.output_dir:
                written = export_parquet(dataset, args.output_dir, args.max_shard_size, repo_id=args.push_to_hub)
                print(f"wrote {len(written)} files to {args.output_dir}")
            if args.push_to_hub:
                configs = tuple(c.strip() for c in args.hub_configs.split(",") if c.strip())
                push_to_hub(dataset, args.push_to_hub, configs=configs, private=args.private or None)
                print(f"pushed {', '.join(configs)} to {args.push_to_hub}")
            print(json.dumps(counts(dataset)))
        elif args.command == "import":
            names = ("output_dir", "source", "split", "limit", "skip_invalid", "append", "image_column")
            options = {name: getattr(args, name) for name in names}  # named as import_annotations' arguments
            summary = import_annotations(
                args.format, args.sources, images_dir=args.images, size=args.size or None, **options
            )
            print(f"wrote {summary.num_written} images to {summary.output_dir}: {json.dumps(summary.counts)}")
            if summary.skipped:
                print(f"skipped {len(summary.skipped)} problems, listed in {summary.report_path}")
    except (RISCValidationError, RISCImportError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
