"""The `wordorder` command: the TUI by default, and headless commands for scripts.

Exit status: 0 on success, 2 for invalid usage, an invalid pair file or an
invalid config file (message on stderr), 1 when a model or run fails, 130
when interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from wordorder_tui import i18n
from wordorder_tui.i18n import t
from wordorder_tui.paths import APP_NAME, default_config_path, default_db_path, default_pairs_dir
from wordorder_tui.report import FORMATS, progress_line

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
COMMANDS = ("run", "history", "show", "models")


class UsageError(Exception):
    """Invalid input from the user: printed on stderr, exit status 2."""


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, help="SQLite log file (default: $WORDORDER_DB or the user data directory)")
    parser.add_argument("--lang", choices=i18n.LANGUAGES, help="language of messages (default: $WORDORDER_LANG or the locale)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries, loads and cache use to stderr")


def _format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wordorder",
        description="Measure whether embedding models see word order. Without a command, open the TUI.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="embed pair sets with models, log the runs and print the cosines")
    run.add_argument("pair_files", nargs="+", type=Path, metavar="PAIRS_FILE", help="pair set TOML files")
    run.add_argument("-m", "--model", action="append", dest="models", metavar="MODEL",
                     help="model name, repeatable (default: the default models); see `wordorder models`")
    _format_option(run)
    _add_common(run)

    history = commands.add_parser("history", help="list past runs, newest first")
    history.add_argument("--limit", type=int, default=50, help="number of runs to list (default: 50)")
    _format_option(history)
    _add_common(history)

    show = commands.add_parser("show", help="print the results of one past run")
    show.add_argument("run_id", type=int, metavar="RUN_ID")
    _format_option(show)
    _add_common(show)

    models = commands.add_parser("models", help="list the models and whether each is ready to use")
    _format_option(models)
    _add_common(models)
    return parser


def build_tui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wordorder",
        description="Open the TUI. Commands for scripts: " + ", ".join(COMMANDS) + " (wordorder COMMAND --help).",
    )
    parser.add_argument("pair_files", nargs="*", type=Path, metavar="PAIRS_FILE", help="extra pair set files to open")
    parser.add_argument("--pairs-dir", type=Path, help="folder of pair sets (default: $WORDORDER_PAIRS or ./pairs)")
    _add_common(parser)
    return parser


def _open_store(db: Path | None):
    import sqlite3

    from wordorder_tui.store import Store

    path = db or default_db_path()
    try:
        store = Store(path)
        store.recover_interrupted()
    except (sqlite3.Error, OSError) as error:
        raise UsageError(t("cli.db_failed", path=path, error=error)) from error
    return store


def _registry():
    from wordorder_tui.config import ConfigError, load_config
    from wordorder_tui.providers.registry import Registry

    try:
        configs = load_config(default_config_path())
    except ConfigError as error:
        raise UsageError(str(error)) from error
    return Registry(configs)


def _load_pair_sets(paths: Sequence[Path]):
    from wordorder_tui.pairs import PairFileError, load_pair_set

    unique_paths = list(dict.fromkeys(path.resolve() for path in paths))
    try:
        pair_sets = [load_pair_set(path) for path in unique_paths]
    except PairFileError as error:
        raise UsageError(str(error)) from error

    # Results are grouped by set name, so two different files may not share one.
    seen: dict[str, Path] = {}
    for pair_set in pair_sets:
        if pair_set.name in seen:
            raise UsageError(t("cli.duplicate_set_name", name=pair_set.name, first=seen[pair_set.name],
                               second=pair_set.path))
        seen[pair_set.name] = pair_set.path
    return pair_sets


def _progress_printer(stream):
    """Return a progress callback that rewrites one stderr line per update, or None when not a terminal."""
    if not stream.isatty():
        return None

    def report(progress) -> None:
        stream.write("\r\033[K" + progress_line(progress))
        if progress.phase == "done":
            stream.write("\n")
        stream.flush()

    return report


def command_run(args: argparse.Namespace) -> int:
    from wordorder_tui.providers.registry import UnknownModel
    from wordorder_tui.report import format_runs
    from wordorder_tui.runner import run_comparison

    pair_sets = _load_pair_sets(args.pair_files)
    registry = _registry()
    names = args.models or registry.defaults()
    if not names:
        raise UsageError(t("cli.no_default_models"))

    try:
        providers = [registry.get(name) for name in dict.fromkeys(names)]
    except UnknownModel as error:
        raise UsageError(str(error)) from error

    # A model that is not ready is skipped, as in the app, and the others run.
    unready = []
    for provider in providers:
        readiness = provider.readiness()
        if not readiness.ready:
            print(t("cli.model_not_ready", model=provider.name, reason=readiness.reason), file=sys.stderr)
            unready.append(provider)
    providers = [provider for provider in providers if provider not in unready]
    if not providers:
        return EXIT_FAILED

    store = _open_store(args.db)
    try:
        outcomes = asyncio.run(
            run_comparison(pair_sets, providers, store, on_progress=_progress_printer(sys.stderr),
                           cancel_status="interrupted")
        )
    except KeyboardInterrupt:
        print("\n" + t("cli.interrupted", db=store.path), file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        store.close()

    references = {
        pair_set.name: {pair.id: pair.reference for pair in pair_set.pairs if pair.reference} for pair_set in pair_sets
    }
    print(format_runs([outcome.as_json() for outcome in outcomes], args.format, references))

    failed = [outcome for outcome in outcomes if outcome.status != "completed"]
    for outcome in failed:
        print(t("cli.run_failed", model=outcome.model, pair_set=outcome.pair_set, error=outcome.error), file=sys.stderr)
    return EXIT_FAILED if failed or unready else EXIT_OK


def command_history(args: argparse.Namespace) -> int:
    from wordorder_tui.report import format_history

    if args.limit < 1:
        raise UsageError(t("cli.invalid_limit", value=args.limit))
    store = _open_store(args.db)
    try:
        print(format_history(store.runs(args.limit), args.format))
    finally:
        store.close()
    return EXIT_OK


def command_show(args: argparse.Namespace) -> int:
    from wordorder_tui.report import format_runs, stored_run

    store = _open_store(args.db)
    try:
        run = store.run(args.run_id)
        if run is None:
            raise UsageError(t("cli.run_not_found", run_id=args.run_id, db=store.path))
        print(format_runs([stored_run(run, store.results(args.run_id))], args.format))
    finally:
        store.close()
    return EXIT_OK


def command_models(args: argparse.Namespace) -> int:
    import json

    from wordorder_tui.report import markdown_table, text_table

    registry = _registry()
    rows = []
    for entry in registry.entries():
        readiness = entry.readiness()
        rows.append(
            {
                "name": entry.name,
                "provider": entry.config.provider,
                "model": entry.config.model,
                "default": entry.config.default,
                "ready": readiness.ready,
                "reason": readiness.reason,
                "settings": entry.provider.settings(),
                "source": entry.config.source,
            }
        )

    if args.format == "json":
        print(json.dumps({"models": rows}, ensure_ascii=False, indent=2))
        return EXIT_OK

    if args.format == "csv":
        import csv

        # CSV headers are data keys for scripts, so they stay the same in every language.
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["name", "provider", "model", "default", "ready", "reason"])
        writer.writerows([row[key] for key in ("name", "provider", "model", "default", "ready", "reason")]
                         for row in rows)
        return EXIT_OK

    headers = [t(f"column.{key}") for key in ("name", "provider", "model", "default", "ready")]
    cells = [
        [row["name"], row["provider"], row["model"], t("cli.yes") if row["default"] else "",
         t("cli.yes") if row["ready"] else t("cli.not_ready", reason=row["reason"])]
        for row in rows
    ]
    if args.format == "markdown":
        print(markdown_table(headers, cells))
    else:
        print(text_table(headers, cells))
    return EXIT_OK


def command_tui(args: argparse.Namespace) -> int:
    # A word that is neither a command nor an existing file is most likely a mistyped command.
    for path in args.pair_files:
        if not path.exists() and path.suffix != ".toml":
            raise UsageError(t("cli.unknown_command", word=path, commands=", ".join(COMMANDS)))
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(t("cli.needs_terminal", commands=", ".join(COMMANDS)))

    from wordorder_tui.tui.app import WordOrderApp

    app = WordOrderApp(
        db_path=args.db or default_db_path(),
        pairs_dir=args.pairs_dir or default_pairs_dir(),
        extra_files=list(args.pair_files),
    )
    app.run()
    return app.return_code or EXIT_OK


def _configure_logging(args: argparse.Namespace, *, to_file: bool) -> None:
    """Send log records to stderr for commands, and to a file for the app.

    Lines written to stderr would land on top of the app's screen. Commands
    print their own one-line errors, so without -v only errors are logged.
    """
    level = logging.INFO if args.verbose else logging.ERROR
    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s" if to_file else "%(levelname)s %(name)s: %(message)s"
    if not to_file:
        logging.basicConfig(level=level, format=log_format)
        return

    import platformdirs

    path = Path(platformdirs.user_log_dir(APP_NAME)) / "wordorder.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter(log_format))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])


OPTIONS_WITH_VALUES = {"--db", "--lang", "--pairs-dir"}


def _command_position(argv: Sequence[str]) -> int | None:
    """Return the index of the command in argv, skipping options and their values, or None."""
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in OPTIONS_WITH_VALUES:
            index += 2
            continue
        if arg.startswith("-"):
            index += 1
            continue
        return index if arg in COMMANDS else None
    return None


HANDLERS = {"run": command_run, "history": command_history, "show": command_show, "models": command_models}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command_at = _command_position(argv)
    if command_at is not None:
        # Options given before the command (`wordorder --lang ja show 3`) belong to it as well.
        argv = [argv[command_at], *argv[:command_at], *argv[command_at + 1 :]]
    is_command = command_at is not None or argv[:1] in (["-h"], ["--help"])
    parser = build_parser() if is_command else build_tui_parser()

    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)

    i18n.set_language(args.lang)
    handler = HANDLERS.get(getattr(args, "command", None) or "", command_tui)
    _configure_logging(args, to_file=handler is command_tui)
    try:
        return handler(args)
    except UsageError as error:
        print(f"wordorder: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (`wordorder history | head`): stop quietly, as Unix tools do.
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
