"""The package's layering, read from the source (no imports run): the runtime imports no
tooling and no scoring, and the scoring home imports no tool's private function."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vlm_node"
RUNTIME = ("anonymize", "analysis", "bags", "ros")  # plus the top-level modules
ABOVE_RUNTIME = ("vlm_node.tools", "vlm_node.cli", "vlm_node.evaluation")


def imports(path: Path) -> set[str]:
    """Modules `path` imports, at any depth (function-level imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def runtime_files() -> list[Path]:
    files = [p for p in PACKAGE.glob("*.py")]
    for part in RUNTIME:
        files += sorted((PACKAGE / part).rglob("*.py"))
    return files


@pytest.mark.parametrize("path", runtime_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_runtime_imports_no_tooling_and_no_scoring(path):
    bad = sorted(m for m in imports(path) if m.startswith(ABOVE_RUNTIME))
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_scoring_home_uses_no_private_function_of_a_tool():
    for path in sorted((PACKAGE / "evaluation").rglob("*.py")):
        bad = sorted(m for m in imports(path) if m.startswith("vlm_node.tools")
                     and m.rsplit(".", 1)[-1].startswith("_"))
        assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"
    # and the layering test itself sees the imports it is meant to catch
    assert "vlm_node.tools.player.FramePlayer" in imports(PACKAGE / "evaluation" / "live.py")
