"""The serving config: packaged defaults, environment switches, and errors that name the key."""

from __future__ import annotations

import pytest

from ai_factory.serving.config import ServingConfigError, load_serving_config


def test_packaged_defaults(monkeypatch):
    for name in ("AI_FACTORY_SERVE_SINGLE", "AI_FACTORY_SERVE_BATCHING", "AI_FACTORY_PREDICTION_LOG",
                 "AI_FACTORY_SERVING_CONFIG", "AI_FACTORY_SERVE_WORKERS", "AI_FACTORY_SERVE_ACCESS_LOG",
                 "AI_FACTORY_SERVE_STALL_MS"):
        monkeypatch.delenv(name, raising=False)
    config = load_serving_config()
    assert config.single_record_scoring == "in_process"
    assert config.adaptive_batching.enabled and config.prediction_log.enabled
    # Far above BentoML's default of 100, which drops requests in flight when it recycles.
    assert config.runner_connection.max_requests >= 1_000_000
    assert config.api_workers == 2 and not config.access_log and not config.trace_predictions
    assert config.stall_watchdog_ms == 0


def test_environment_switches(monkeypatch):
    monkeypatch.setenv("AI_FACTORY_SERVE_SINGLE", "Runner")
    monkeypatch.setenv("AI_FACTORY_SERVE_BATCHING", "off")
    config = load_serving_config()
    assert config.single_record_scoring == "runner" and not config.adaptive_batching.enabled
    monkeypatch.setenv("AI_FACTORY_SERVE_SINGLE", "gpu")
    with pytest.raises(ServingConfigError, match="AI_FACTORY_SERVE_SINGLE='gpu' must be in_process or runner"):
        load_serving_config()


def test_invalid_values_name_the_key(tmp_path, monkeypatch):
    monkeypatch.delenv("AI_FACTORY_SERVE_SINGLE", raising=False)
    bad = tmp_path / "serving.yaml"
    bad.write_text("single_record_scoring: sometimes\nrunner_connection: {max_requests: 0}\n")
    with pytest.raises(ServingConfigError) as err:
        load_serving_config(bad)
    assert "key 'single_record_scoring'" in str(err.value) and "key 'runner_connection.max_requests'" in str(err.value)


def test_worker_access_log_and_watchdog_overrides(monkeypatch):
    monkeypatch.setenv("AI_FACTORY_SERVE_WORKERS", "3")
    monkeypatch.setenv("AI_FACTORY_SERVE_ACCESS_LOG", "true")
    monkeypatch.setenv("AI_FACTORY_SERVE_STALL_MS", "25")
    config = load_serving_config()
    assert (config.api_workers, config.access_log, config.stall_watchdog_ms) == (3, True, 25.0)
    monkeypatch.setenv("AI_FACTORY_SERVE_WORKERS", "0")
    with pytest.raises(ServingConfigError, match="AI_FACTORY_SERVE_WORKERS=0: .*greater than or equal to 1"):
        load_serving_config()
    monkeypatch.setenv("AI_FACTORY_SERVE_WORKERS", "two")
    with pytest.raises(ServingConfigError, match="AI_FACTORY_SERVE_WORKERS='two' must be a number"):
        load_serving_config()
    monkeypatch.setenv("AI_FACTORY_SERVE_WORKERS", "2")
    monkeypatch.setenv("AI_FACTORY_SERVE_STALL_MS", "-5")
    with pytest.raises(ServingConfigError, match="AI_FACTORY_SERVE_STALL_MS=-5.0: .*greater than or equal to 0"):
        load_serving_config()


def test_event_time_window_defaults_and_overrides(monkeypatch, tmp_path):
    monkeypatch.delenv("AI_FACTORY_SERVE_EVENT_DAYS_BACK", raising=False)
    monkeypatch.delenv("AI_FACTORY_SERVE_EVENT_DAYS_AHEAD", raising=False)
    monkeypatch.delenv("AI_FACTORY_SERVING_CONFIG", raising=False)
    window = load_serving_config().event_time.window()
    assert (window.max_days_back, window.max_days_ahead) == (400, 1)
    monkeypatch.setenv("AI_FACTORY_SERVE_EVENT_DAYS_BACK", "800")
    monkeypatch.setenv("AI_FACTORY_SERVE_EVENT_DAYS_AHEAD", "0")
    window = load_serving_config().event_time.window()
    assert (window.max_days_back, window.max_days_ahead) == (800, 0)
    monkeypatch.setenv("AI_FACTORY_SERVE_EVENT_DAYS_AHEAD", "-1")
    with pytest.raises(ServingConfigError, match="AI_FACTORY_SERVE_EVENT_DAYS_AHEAD='-1': .*greater than or equal"):
        load_serving_config()
    monkeypatch.setenv("AI_FACTORY_SERVE_EVENT_DAYS_AHEAD", "a week")
    with pytest.raises(ServingConfigError, match="AI_FACTORY_SERVE_EVENT_DAYS_AHEAD='a week': must be a number"):
        load_serving_config()
    bad = tmp_path / "serving.yaml"
    bad.write_text("event_time: {max_days_back: -3}\n")
    monkeypatch.delenv("AI_FACTORY_SERVE_EVENT_DAYS_AHEAD")
    with pytest.raises(ServingConfigError, match="key 'event_time.max_days_back'"):
        load_serving_config(bad)


def test_a_partial_config_file_gets_defaults_bentoml_accepts(tmp_path, monkeypatch):
    """BentoML's config schema wants floats: an int default (86400) failed `bentoml serve` with a file lacking the key."""
    monkeypatch.delenv("AI_FACTORY_SERVE_WORKERS", raising=False)
    partial = tmp_path / "serving.yaml"
    partial.write_text("api_workers: 1\n")
    config = load_serving_config(partial)
    assert isinstance(config.runner_connection.max_age_seconds, float)
    assert isinstance(config.traffic.timeout_seconds, float) and config.api_workers == 1
