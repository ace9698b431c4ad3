"""``pocketpack serve`` (web UI / API), ``pocketpack chat`` (one turn in the terminal) and
``pocketpack model`` (the embedded default model)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pocketpack.errors import UsageError

ALL_EXTENSIONS = ["memory", "rag-enhancer", "adapter-switcher", "vram-advisor"]


def _pack_root() -> Path:
    """The folder holding ``extensions/``: the checkout this package runs from, else the cwd."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "extensions").is_dir() else Path.cwd()


def _common(parser: argparse.ArgumentParser) -> None:
    from pocketpack.host.flags import add_model_flags

    parser.add_argument("--model", help="model file or folder, or a name in --model-dir "
                                        "(default: the embedded Gemma 3 270M GGUF)")
    parser.add_argument("--model-dir", default="models", help="folder of models (default: models)")
    parser.add_argument("--extensions", nargs="*", default=None, metavar="NAME",
                        help=f"extensions to load, in hook order (default: all four: {' '.join(ALL_EXTENSIONS)})")
    parser.add_argument("--root", default=None, help="folder holding extensions/ (default: the pack's checkout)")
    parser.add_argument("--user-data-dir", default=None, help="user data folder (default: ROOT/user_data)")
    parser.add_argument("--settings", default=None, help="settings.yaml (default: USER_DATA_DIR/settings.yaml)")
    parser.add_argument("--verbose", action="store_true", help="print each prompt to stderr (as TGWUI's --verbose)")
    add_model_flags(parser)


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="start the web UI (or the API with --nowebui --api)")
    _common(serve)
    serve.add_argument("--listen", action="store_true", help="listen on all interfaces (default: 127.0.0.1 only)")
    serve.add_argument("--listen-host", default=None)
    serve.add_argument("--listen-port", type=int, default=7860)
    serve.add_argument("--nowebui", action="store_true", help="no web UI (extensions' ui() is never called)")
    serve.add_argument("--api", action="store_true", help="serve an OpenAI-compatible API")
    serve.add_argument("--api-port", type=int, default=5000)
    serve.add_argument("--multi-user", action="store_true",
                       help="several people on one server (TGWUI's flag): memories, private documents and "
                            "adapter bindings are kept per signed-in user; with nobody signed in, memory is off")
    serve.add_argument("--gradio-auth", default=None, metavar="USER:PASS,...",
                       help="web UI logins (TGWUI's flag): 'u1:p1,u2:p2'; the login names the user")
    serve.add_argument("--gradio-auth-path", default=None, metavar="FILE",
                       help="a file of user:password pairs (comma- or line-separated), as TGWUI's flag")
    serve.set_defaults(func=cmd_serve)

    chat = subparsers.add_parser("chat", help="send one message and print the streamed reply")
    _common(chat)
    chat.add_argument("message")
    chat.add_argument("--character", default=None, help="a character from USER_DATA_DIR/characters")
    chat.add_argument("--mode", choices=["chat", "chat-instruct", "instruct"], default="chat")
    chat.add_argument("--max-new-tokens", type=int, default=120)
    chat.add_argument("--seed", type=int, default=1)
    chat.add_argument("--json", action="store_true", help="print the final history as JSON")
    chat.set_defaults(func=cmd_chat)

    model = subparsers.add_parser("model", help="the embedded default model")
    model.add_argument("action", choices=["default"], help="default: assemble the embedded model and print its path")
    model.add_argument("--model-dir", default="models")
    model.set_defaults(func=cmd_model)


def _runtime(args, nowebui: bool):
    from pocketpack.host.extensions import ExtensionImportError
    from pocketpack.host.runtime import Runtime

    # "memory,rag-enhancer" (the comma form many TGWUI guides show) means the same as spaces here
    names = ALL_EXTENSIONS if args.extensions is None else [
        name for arg in args.extensions for name in arg.split(",") if name.strip()]
    names = [name.strip() for name in names]
    try:
        return Runtime(root=args.root or _pack_root(), user_data_dir=args.user_data_dir, extensions=names,
                       settings_file=args.settings, nowebui=nowebui, model_dir=args.model_dir)
    except ExtensionImportError as exc:  # a missing package: the one line says what to install
        raise UsageError(str(exc)) from None


def _model_path(args) -> Path:
    from pocketpack.host.default_model import ensure_default_model

    if not args.model:
        return ensure_default_model(Path(args.model_dir))
    candidate = Path(args.model)
    if not candidate.exists() and (Path(args.model_dir) / args.model).exists():
        candidate = Path(args.model_dir) / args.model
    return candidate


def _load(runtime, args) -> None:
    from pocketpack.host.backends.base import ModelLoadError
    from pocketpack.host.flags import LoadSettings
    from pocketpack.host.model_settings import with_saved_settings

    try:
        path = _model_path(args)
        # the model's saved settings (the VRAM advisor's "Apply preset"); flags given here win, as in TGWUI
        settings, used = with_saved_settings(LoadSettings.from_args(args), runtime.host.user_data_dir, path)
        if used:
            print(f"{path.name}: saved settings {', '.join(f'{k}={v}' for k, v in used.items())}", file=sys.stderr)
        runtime.load_model(path, settings)
    except FileNotFoundError as exc:  # the model file (ModelLoadError, FlagConflict, SettingsError reach cli.main)
        raise ModelLoadError(str(exc)) from None


def gradio_logins(auth: str | None, path: str | None) -> list[tuple[str, str]]:
    """``--gradio-auth`` and ``--gradio-auth-path`` as gradio's ``auth`` list, read as TGWUI's
    server.py reads them (comma-separated ``user:password``; the file may use lines too)."""
    entries = [x.strip() for x in (auth or "").strip('"').replace("\n", "").split(",") if x.strip()]
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--gradio-auth-path {path}: {exc.strerror or exc}") from None
        entries += [x.strip() for line in text.splitlines() for x in line.split(",") if x.strip()]
    logins = []
    for entry in entries:
        user, sep, password = entry.partition(":")
        if not sep or not user.strip():
            raise UsageError(f"--gradio-auth: expected user:password, got {user.strip() or '(empty)'!r}…")
        logins.append((user.strip(), password))
    return logins


def cmd_serve(args) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logins = gradio_logins(args.gradio_auth, args.gradio_auth_path)
    from pocketpack.host import shared
    from pocketpack.host.settings import api_users

    shared.args.multi_user = bool(args.multi_user)  # before the extensions' setup(), as in TGWUI
    runtime = _runtime(args, nowebui=args.nowebui)
    api_users(shared.settings or {})  # a broken users: entry is one line now, not a 500 per request
    _load(runtime, args)

    shared.args.verbose = args.verbose
    host = "0.0.0.0" if args.listen else (args.listen_host or "127.0.0.1")
    if args.nowebui:
        if not args.api:
            raise UsageError("--nowebui needs --api (otherwise there is nothing to serve)")
        from pocketpack.host.api import serve_api

        serve_api(runtime, host=host, port=args.api_port)
        return 0
    from pocketpack.host.webui import build_ui

    root = Path(args.root or _pack_root())
    user_data = Path(args.user_data_dir) if args.user_data_dir else root / "user_data"
    demo = build_ui(runtime, Path(args.model_dir), user_data / "characters",
                    model_name=runtime.backend.model_name if runtime.backend else None)
    if args.api:
        from pocketpack.host.api import serve_api_in_background

        serve_api_in_background(runtime, host, args.api_port)
    print(f"Pocket Pack web UI on http://{host}:{args.listen_port} "
          f"(model: {runtime.backend.model_name}; extensions: {', '.join(runtime.host.loaded) or 'none'})", flush=True)
    demo.queue().launch(server_name=host, server_port=args.listen_port, show_error=True, share=False,
                        auth=logins or None)
    return 0


def cmd_chat(args) -> int:
    from pocketpack.host.characters import load_character
    from pocketpack.host.chat import default_state

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    runtime = _runtime(args, nowebui=True)
    _load(runtime, args)
    from pocketpack.host import shared

    shared.args.verbose = args.verbose
    state = default_state(mode=args.mode, max_new_tokens=args.max_new_tokens, seed=args.seed)
    if args.character:
        try:
            state.update(load_character(runtime.host.user_data_dir / "characters", args.character))
        except ValueError as exc:  # no such character, or its file is not a mapping
            raise UsageError(str(exc)) from None
    printed = ""
    history = state["history"]
    for history in runtime.chat(args.message, state, loading_message=False):
        reply = history["internal"][-1][1]
        if not args.json and reply.startswith(printed):
            sys.stdout.write(reply[len(printed):])
            sys.stdout.flush()
            printed = reply
    for failure in runtime.host.take_failures():
        print(f"warning: {failure.notice()}", file=sys.stderr)
    if args.json:
        print(json.dumps(history, ensure_ascii=False, indent=1))
    else:
        print()
    return 0


def cmd_model(args) -> int:
    from pocketpack.host.default_model import ensure_default_model

    print(ensure_default_model(Path(args.model_dir)))
    return 0
