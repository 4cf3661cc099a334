"""The ``recon`` command line.

Each subcommand lives in its own module and is imported only when used, so ``recon --help`` is
fast. A subcommand module exposes a function whose dataclass/typed signature tyro turns into
options. :class:`recon.errors.ReconError` becomes one line on stderr and exit code 2.

To add a command, add one line to :data:`COMMANDS`: ``name: ("module:function", "one-line help")``.
Only commands that work are listed.
"""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    # name: ("module:function", "help")
    "demo": ("recon.commands.demo:main", "the whole job on the built-in scene: generate, train, evaluate, export"),
    "train": ("recon.commands.train:command", "train a method (Gaussian splats, ...) on a capture (runs SfM first when needed), evaluate, write the run"),
    "eval": ("recon.commands.eval:main", "score a trained run on held-out views: PSNR, SSIM, LPIPS"),
    "export": ("exporters.cli:main", "write splats (PLY, SPZ, .splat, glTF, USD), textured meshes (GLB, OBJ, USD, USDZ) and cameras for engines, VR/AR and USD"),
    "scene": ("scenes.cli:main", "built-in ground-truth scenes: recon scene synth NAME OUT"),
    "view": ("viewer.cli:main", "serve a trained run to a browser (viser) and VR headsets (WebXR)"),
    "render": ("viewer.render_cli:main", "render a run along a camera path (or an orbit) to an MP4, with depth/alpha frames"),
    "info": ("recon.scene.info:main", "what a scene folder contains: images, poses, formats, resolution, splits"),
    "process": ("recon.sfm.cli:main", "photos or video to posed, undistorted frames with pycolmap (SfM)"),
    "plugins": ("recon.commands.plugins:main", "the 2D enhancement/generation plugins installed for process --enhance and render --post"),
    "select": ("recon.commands.select:main", "cut one object out of a trained splat run from a click, a box or masks (SAM 2, GrabCut)"),
    "batch": ("recon.commands.batch:command", "many captures as Ray tasks: process, train, evaluate, export each; resumable (docs/cluster.md)"),
}


def _usage() -> str:
    lines = ["usage: recon COMMAND [options]", "", "commands:"]
    width = max((len(n) for n in COMMANDS), default=8)
    for name, (_, help_) in COMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {help_}")
    lines += ["", "Run `recon COMMAND --help` for a command's options."]
    return "\n".join(lines)


def run(argv: list[str]) -> int:
    """Dispatch ``argv`` (without the program name); returns the exit code."""
    from recon.errors import ReconError

    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("--version", "version"):
        from recon import __version__

        print(f"recon {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"recon: unknown command {name!r}; run `recon --help` for the list", file=sys.stderr)
        return 2
    target, _ = COMMANDS[name]
    mod_name, func_name = target.split(":")
    try:
        func = getattr(importlib.import_module(mod_name), func_name)
        result = _call(func, argv[1:], name)
        return int(result) if isinstance(result, int) else 0
    except ReconError as e:
        print(f"recon {name}: error: {_one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"recon {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into a program that stopped reading (`recon ... --help | head`): not an error.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except OSError as e:
        # Permissions, a full disk, a read-only file system, an over-long name, a file where a
        # folder should be: the user's environment, not a bug. One line, no traceback. Outputs are
        # written atomically (recon.io_utils.atomic_path), so nothing half-written is left behind.
        from recon.errors import describe_os_error

        print(f"recon {name}: error: {describe_os_error(e)}", file=sys.stderr)
        return 2


def _one_line(msg: str) -> str:
    return " ".join(msg.split()) if "\n" in msg else msg


class _ParseError(Exception):
    """tyro rejected the command line (its message, reduced to one line)."""


def _call(func, args: list[str], name: str):
    """``tyro.cli(func, args)``, with tyro's boxed error message reduced to one line.

    stderr is held back while tyro parses; once the command starts, what was held is written out
    and stderr is the real one again. A parse error becomes a :class:`ReconError` naming the
    offending option and value.
    """
    import functools
    import io

    import tyro

    from recon.errors import ReconError

    parse = getattr(func, "parse", None)
    if parse is not None:
        # A command that builds its own parser (e.g. `recon train`, whose options depend on
        # --method): parse with stderr held back, then run.
        return func(_quiet_parse(lambda: parse(args, prog=f"recon {name}"), name))

    real = sys.stderr
    held = io.StringIO()
    started = False

    @functools.wraps(func)
    def start(*a, **k):
        nonlocal started
        started = True
        sys.stderr = real
        real.write(held.getvalue())
        return func(*a, **k)

    sys.stderr = held
    try:
        return tyro.cli(start, args=args, prog=f"recon {name}")
    except SystemExit as e:
        if started or e.code in (0, None):
            if not started:
                real.write(held.getvalue())
            raise
        raise ReconError(_tyro_message(held.getvalue(), name)) from None
    finally:
        if not started:
            sys.stderr = real


def parse_only(argv: list[str]):
    """Parse ``recon ARGV`` with the real parsers and run nothing (for tests of documented command
    lines); raises ``SystemExit`` as argparse does on a bad line."""
    import tyro

    name = argv[0]
    if name in ("-h", "--help", "help", "--version", "version"):
        return None
    if name not in COMMANDS:
        raise SystemExit(f"unknown command {name!r}")
    mod_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(mod_name), func_name)
    parse = getattr(func, "parse", None)
    if parse is not None:
        return parse(argv[1:], prog=f"recon {name}", offline=True)
    return tyro.extras.get_parser(func, prog=f"recon {name}").parse_args(argv[1:])


def _quiet_parse(parse, name: str):
    """Run ``parse()`` (a tyro parse) with stderr held back; a parse error becomes one line."""
    import io

    from recon.errors import ReconError

    real = sys.stderr
    held = io.StringIO()
    sys.stderr = held
    try:
        return parse()
    except SystemExit as e:
        if e.code in (0, None):
            real.write(held.getvalue())
            raise
        raise ReconError(_tyro_message(held.getvalue(), name)) from None
    finally:
        sys.stderr = real


def _tyro_message(text: str, name: str) -> str:
    """The first paragraph of tyro's boxed error, as one line."""
    lines = []
    for raw in text.splitlines():
        s = raw.strip().strip("\u2502\u256d\u256e\u2570\u256f").strip()
        if not s or set(s) <= set("\u2500\u256d\u256e\u2570\u256f\u2502 "):
            if lines:
                break
            continue
        if s.startswith("\u2500") or "error \u2500" in s.lower() or s.endswith("\u2500"):
            # the title bar: "─ Value error ───"
            continue
        lines.append(s)
    msg = " ".join(" ".join(lines).split()) or "invalid command line"
    return f"{msg.rstrip('.')}; see `recon {name} --help`"


def main() -> None:
    # torch's OpenMP threads otherwise spin after each parallel op and compete with the CPU
    # rasterizer's threads for the cores (measured: 279 -> 130 ms per 256x256/50k fwd+bwd at load 3;
    # docs/benchmarks.md). Must be set before torch is imported; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
