"""The plugin module is imported by every task process: it must stay cheap there."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from ai_factory.ui.lazy import LazyApp

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
import ai_factory_ui
heavy = sorted(m for m in ("fastapi", "airflow.api_fastapi.core_api.security", "ai_factory.ui.app", "bentoml")
               if m in sys.modules)
print(",".join(heavy) or "none")
print(len(ai_factory_ui.AIFactoryUIPlugin.fastapi_apps), len(ai_factory_ui.AIFactoryUIPlugin.external_views))
"""


def test_importing_the_plugin_imports_no_web_framework_or_app():
    out = subprocess.run([sys.executable, "-c", PROBE, str(REPO / "plugins")], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["none", "1", "3"]


def test_lazy_app_builds_the_real_app_once_on_first_request(monkeypatch):
    calls = []

    async def inner(scope, receive, send):
        calls.append(scope["path"])

    module = type(sys)("fake_ui_module")
    built = []
    module.make = lambda: built.append(1) or inner
    monkeypatch.setitem(sys.modules, "fake_ui_module", module)
    app = LazyApp("fake_ui_module:make")
    assert built == []
    for path in ("/a", "/b"):
        asyncio.run(app({"type": "http", "path": path}, None, None))
    assert built == [1] and calls == ["/a", "/b"]


@pytest.mark.parametrize("bad", ["no_colon", ":make", "module:"])
def test_lazy_app_rejects_a_malformed_factory(bad):
    with pytest.raises(ValueError, match="package.module:function"):
        LazyApp(bad)
