"""``recon plugins``: the 2D enhancement and generation plugins installed (docs/enhance.md)."""

from __future__ import annotations

import json


def main(json_output: bool = False) -> int:
    """List the plugins ``recon process --enhance`` and ``recon render --post`` can run: name, kind
    (restore: recovers what the camera saw; generate: invents content, refused by
    --restoration-only), version, where it comes from (built-in, an installed package's
    ``recon.enhancers`` / ``recon.generators`` entry point, local registration) and what it does.

    Args:
        json_output: print JSON instead of a table.
    """
    from recon.enhance.registry import available

    errors: list[str] = []
    reg = available(errors)
    from recon.enhance.torchvision_compat import _find

    rows = []
    for e in sorted(reg.values(), key=lambda e: (e.source != "built-in", e.name)):
        req = getattr(e.factory, "requires", None)
        missing = req if req and _find(req) is None else None
        rows.append({"name": e.name, "kind": e.kind, "version": e.version, "source": e.source,
                     "description": e.description, "missing": missing})
    if json_output:
        print(json.dumps({"plugins": rows, "errors": errors}, indent=1))
        return 0
    w = max(len(r["name"]) for r in rows)
    for r in rows:
        note = f" [needs {r['missing']}: install recon's enhance extra]" if r["missing"] else ""
        print(f"{r['name'].ljust(w)}  {r['kind']:<8}  {r['source']}: {r['description']}{note}")
    print("\nsteps: NAME[:ARG][:KEY=VALUE], comma-separated, e.g. recon process SCENE --enhance denoise,sr:model.pth")
    for e in errors:
        print(f"warning: {e}")
    return 0
