"""The deployment files agree with the code and with each other.

Covers ``Dockerfile`` (+ ``.dockerignore``), ``deploy/docker-compose.yml``,
``deploy/triaged.env.example`` and ``systemd/triaged.service``. Each test fails when one of
them drifts: a setting added to :class:`~daemon.shared.config.Settings` but not documented,
a grace period raised past the stop timeouts, a shell-form entrypoint, a unit key in the
wrong section. No YAML library is required (PyYAML is not a dependency): the compose file
is checked line by line, plus structurally when PyYAML happens to be importable.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from daemon.shared.config import ENV_FILE_VARIABLE, ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "triaged.env.example"
UNIT = ROOT / "systemd" / "triaged.service"

# Stopping also stops the embedded PostgreSQL and tears the process down: leave this much
# above the configured drain budget in every stop timeout.
STOP_MARGIN_SECONDS = 10.0

VARIABLE = re.compile(r"\bTRIAGED_[A-Z0-9_]*[A-Z0-9]\b")
ASSIGNMENT = re.compile(r"^(?P<comment>#\s*)?(?P<name>TRIAGED_[A-Z0-9_]+)=(?P<value>.*)$")


def _default(field: str) -> object:
    return Settings.model_fields[field].default


def drain_budget_seconds() -> float:
    """Worst-case drain with default settings: pre-stop delay + HTTP grace + job grace."""
    return float(
        _default("pre_stop_delay_seconds")  # type: ignore[arg-type]
        + _default("http_grace_seconds")  # type: ignore[operator]
        + _default("job_grace_seconds")
    )


def known_variables() -> set[str]:
    return {ENV_PREFIX + name.upper() for name in Settings.model_fields} | {ENV_FILE_VARIABLE}


def field_of(variable: str) -> str:
    return variable.removeprefix(ENV_PREFIX).lower()


def test_drain_budget_is_read_from_settings():
    # Guards the helper itself: the stop-timeout tests below compare against this sum.
    assert drain_budget_seconds() > 0


# --- durations --------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|us|h|m|s)")
_SYSTEMD_UNITS = {
    "us": 1e-6,
    "usec": 1e-6,
    "ms": 1e-3,
    "msec": 1e-3,
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}


def compose_duration(text: str) -> float:
    """A Compose duration ("45s", "1m30s") in seconds."""
    text = text.strip().strip("\"'")
    parts = _DURATION_PART.findall(text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * scale[unit] for number, unit in parts)


def systemd_timespan(text: str) -> float:
    """A systemd time span ("45", "45s", "1min 30s") in seconds."""
    total = 0.0
    tokens = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip())
    assert tokens, f"not a time span: {text!r}"
    for number, unit in tokens:
        assert unit in _SYSTEMD_UNITS, f"unknown time unit {unit!r} in {text!r}"
        total += float(number) * _SYSTEMD_UNITS[unit]
    return total


def test_duration_parsers():
    assert compose_duration("45s") == 45
    assert compose_duration("1m30s") == 90
    assert systemd_timespan("45") == 45
    assert systemd_timespan("1min 30s") == 90


# --- deploy/triaged.env.example ---------------------------------------------------------


def env_assignments() -> list[tuple[int, bool, str, str]]:
    """(line index, commented out, variable, value) of every ``[# ]TRIAGED_X=value`` line."""
    found = []
    for index, line in enumerate(ENV_EXAMPLE.read_text().splitlines()):
        match = ASSIGNMENT.match(line.strip())
        if match:
            found.append((index, match["comment"] is not None, match["name"], match["value"]))
    return found


def test_env_example_documents_every_setting_once():
    names = [name for _, _, name, _ in env_assignments()]
    missing = known_variables() - set(names)
    unknown = set(names) - known_variables()
    duplicated = {name for name in names if names.count(name) > 1}
    assert not missing, f"settings not in {ENV_EXAMPLE.name}: {sorted(missing)}"
    assert not unknown, f"{ENV_EXAMPLE.name} sets variables triaged does not read: {unknown}"
    assert not duplicated, f"assigned more than once in {ENV_EXAMPLE.name}: {duplicated}"


def test_env_example_mentions_only_known_variables():
    mentioned = set(VARIABLE.findall(ENV_EXAMPLE.read_text()))
    assert mentioned <= known_variables(), sorted(mentioned - known_variables())


def test_env_example_explains_each_setting_and_its_default():
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, _, name, _ in env_assignments():
        if name == ENV_FILE_VARIABLE:
            continue
        comment = []
        above = index - 1
        while (
            above >= 0
            and lines[above].startswith("#")
            and not ASSIGNMENT.match(lines[above].strip())
        ):
            comment.append(lines[above])
            above -= 1
        assert comment, f"{name} has no explanation above it"
        assert "Default" in "\n".join(comment), f"the comment above {name} states no default"


def test_env_example_shows_the_real_defaults():
    for _, commented, name, value in env_assignments():
        if name == ENV_FILE_VARIABLE:
            continue
        field = Settings.model_fields[field_of(name)]
        if field.default is None or field.is_required():
            continue  # an example value, not a default (e.g. the database URL)
        parsed = getattr(Settings(**{field_of(name): value}), field_of(name))
        if commented:
            assert parsed == field.default, (
                f"{name}={value} is shown as the default, but the default is {field.default!r}"
            )
        else:
            assert parsed != field.default, (
                f"{name}={value} only restates the default: comment it out"
            )


def test_env_example_uses_the_portable_syntax():
    # Read by systemd's EnvironmentFile=, compose's env_file and python-dotenv alike only if
    # values have no quotes, no spaces, no `export` and no trailing comment.
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not ASSIGNMENT.match(stripped)):
            continue
        match = ASSIGNMENT.match(stripped)
        assert match, f"line {number}: not KEY=value or a comment: {line!r}"
        value = match["value"]
        assert not re.search(r"[\s'\"#]", value), f"line {number}: non-portable value {value!r}"


# --- Dockerfile ---------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "Dockerfile ends inside a continuation line"
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def stage_values(keyword: str) -> list[str]:
    return [arguments for found, arguments in final_stage() if found == keyword]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in stage_values("ENV"):
        for word in shlex.split(arguments):
            key, sep, value = word.partition("=")
            assert sep, f"use ENV KEY=value, not the legacy form: ENV {arguments}"
            env[key] = value
    return env


def global_args() -> dict[str, str]:
    args: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "FROM":
            break
        if keyword == "ARG":
            key, _, value = arguments.partition("=")
            args[key] = value
    return args


def test_dockerfile_is_multi_stage_on_python_311_slim():
    froms = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "FROM"]
    assert len(froms) >= 2, "expected a builder stage and a runtime stage"
    assert re.search(r"\bAS\s+builder\b", froms[0], re.IGNORECASE)
    base = re.sub(r"\$\{(\w+)\}", lambda m: global_args()[m[1]], froms[-1].split()[0])
    assert base.startswith("python:3.11-slim"), base
    assert any("--from=builder" in args for args in stage_values("COPY"))


def test_dockerfile_entrypoint_and_cmd_are_exec_form():
    # Shell form would run `sh -c`, which does not pass SIGTERM on: `docker stop` would
    # end in SIGKILL after the timeout instead of a drain.
    (entrypoint,) = stage_values("ENTRYPOINT")
    (cmd,) = stage_values("CMD")
    assert json.loads(entrypoint) == ["triaged"]
    assert json.loads(cmd) == ["serve"]


def test_dockerfile_runs_as_non_root():
    users = stage_values("USER")
    assert users, "the image must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]


def test_dockerfile_stopsignal_and_healthcheck():
    assert stage_values("STOPSIGNAL") == ["SIGTERM"]
    (healthcheck,) = stage_values("HEALTHCHECK")
    assert healthcheck.split()[0] != "NONE"
    assert "/livez" in healthcheck
    # python:3.11-slim ships neither curl nor wget.
    assert "curl" not in healthcheck
    assert "wget" not in healthcheck
    command = healthcheck[healthcheck.index("CMD") + len("CMD") :].strip()
    assert json.loads(command)[0] == "python", "exec-form CMD running the interpreter"


def test_dockerfile_environment_port_and_volume():
    env = dockerfile_env()
    assert env["TRIAGED_HTTP_HOST"] == "0.0.0.0"
    port = env.get("TRIAGED_HTTP_PORT", str(_default("http_port")))
    assert port in " ".join(stage_values("EXPOSE")).split()
    data_dir = env["TRIAGED_DATA_DIR"]
    volumes = " ".join(stage_values("VOLUME"))
    assert data_dir in volumes
    assert data_dir in " ".join(stage_values("WORKDIR") + stage_values("RUN")), (
        "the data directory must be created (owned by the user) before VOLUME"
    )


def test_dockerfile_mentions_only_known_variables():
    mentioned = set(VARIABLE.findall(DOCKERFILE.read_text()))
    assert mentioned <= known_variables(), sorted(mentioned - known_variables())


def test_dockerignore_keeps_what_the_build_copies():
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    if "*" not in patterns:
        pytest.skip(".dockerignore is not an allow-list")
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY" or "--from=" in arguments:
            continue
        sources = [w for w in shlex.split(arguments) if not w.startswith("--")][:-1]
        for source in sources:
            top = source.split("/")[0]
            assert top in allowed, f"COPY {source}: excluded by .dockerignore"
    assert ".env" not in allowed


# --- deploy/docker-compose.yml --------------------------------------------------------------


def compose_lines() -> list[str]:
    return [
        line
        for line in COMPOSE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def compose_values(key: str) -> list[str]:
    pattern = re.compile(rf"^\s*{re.escape(key)}:\s*(\S.*)$")
    return [m[1].strip() for line in compose_lines() if (m := pattern.match(line))]


def test_compose_stop_grace_period_exceeds_drain_budget():
    periods = compose_values("stop_grace_period")
    assert periods, "no stop_grace_period: docker would SIGKILL after 10 s"
    needed = drain_budget_seconds() + STOP_MARGIN_SECONDS
    for period in periods:
        assert compose_duration(period) >= needed, (
            f"stop_grace_period {period} < drain budget {drain_budget_seconds()} s "
            f"+ {STOP_MARGIN_SECONDS} s"
        )


def test_compose_essentials():
    text = "\n".join(compose_lines())
    assert "image: postgres:16" in text
    assert "pg_isready" in text
    assert "condition: service_healthy" in text
    assert "restart: unless-stopped" in text
    assert "/readyz" in text
    assert re.search(r"TRIAGED_DATABASE_URL:\s*postgresql://\S+@postgres:5432/", text)
    ports = [line.strip() for line in compose_lines() if re.match(r"^\s*- \"[^\"]*:\d+\"$", line)]
    assert ports, "the triaged service publishes a port"
    for port in ports:
        assert "127.0.0.1:" in port, f"{port}: bind to loopback by default"


def test_compose_mentions_only_known_variables():
    mentioned = set(VARIABLE.findall(COMPOSE.read_text()))
    assert mentioned <= known_variables(), sorted(mentioned - known_variables())


def test_compose_structure():
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed: line checks only")
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["postgres"]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    needed = drain_budget_seconds() + STOP_MARGIN_SECONDS
    for name in ("triaged", "worker"):
        service = services[name]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert compose_duration(service["stop_grace_period"]) >= needed
        assert service["restart"] == "unless-stopped"
        assert "TRIAGED_DATABASE_URL" in service["environment"]
    assert "/readyz" in " ".join(services["triaged"]["healthcheck"]["test"])
    assert services["worker"]["command"] == ["worker"]
    assert services["worker"]["profiles"]
    assert services["worker"]["healthcheck"] == {"disable": True}


# --- systemd/triaged.service ------------------------------------------------------------


def unit_sections(text: str | None = None) -> dict[str, list[tuple[str, str]]]:
    """Section -> (key, value) in order; keys may repeat (Environment=, ...)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    pending = ""
    for raw in (UNIT.read_text() if text is None else text).splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        assert current is not None, f"key outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line!r}"
        sections[current].append((key.strip(), value.strip()))
    return sections


def unit_value(section: str, key: str) -> str:
    values = [v for k, v in unit_sections()[section] if k == key]
    assert values, f"{key}= missing from [{section}]"
    return values[-1]


def test_unit_is_notify_with_watchdog():
    assert unit_value("Service", "Type") == "notify"
    assert unit_value("Service", "NotifyAccess") == "main"
    assert systemd_timespan(unit_value("Service", "WatchdogSec")) > 0
    # READY=1 comes after the database wait (and initdb for the embedded one).
    field = Settings.model_fields.get("startup_timeout_seconds")
    startup = float(field.default) if field is not None else 60.0
    assert systemd_timespan(unit_value("Service", "TimeoutStartSec")) >= startup + 30


def test_unit_stops_gracefully():
    assert unit_value("Service", "KillMode") == "mixed"
    assert unit_value("Service", "KillSignal") == "SIGTERM"
    timeout = systemd_timespan(unit_value("Service", "TimeoutStopSec"))
    assert timeout >= drain_budget_seconds() + STOP_MARGIN_SECONDS, (
        f"TimeoutStopSec={timeout} < drain budget {drain_budget_seconds()} s "
        f"+ {STOP_MARGIN_SECONDS} s"
    )
    assert unit_value("Service", "Restart") == "on-failure"


def test_unit_start_limits_are_in_unit_section():
    # In [Service], StartLimitIntervalSec= is ignored while StartLimitBurst= is accepted
    # as a legacy alias (systemd 252): a half-applied rate limit that nobody notices.
    sections = unit_sections()
    misplaced = [k for k, _ in sections["Service"] if k.startswith("StartLimit")]
    assert not misplaced, f"move to [Unit]: {misplaced}"
    unit_keys = {k for k, _ in sections["Unit"]}
    assert {"StartLimitIntervalSec", "StartLimitBurst"} <= unit_keys


def test_unit_runs_the_installed_daemon_with_its_state_directory():
    exec_start = unit_value("Service", "ExecStart").split()
    assert exec_start[0].startswith("/")
    assert Path(exec_start[0]).name == "triaged"
    assert exec_start[1:] == ["serve"]
    assert unit_value("Service", "StateDirectory") == "triaged"
    environment = [v for k, v in unit_sections()["Service"] if k == "Environment"]
    assert any("TRIAGED_DATA_DIR=%S/triaged" in shlex.split(v) for v in environment)
    assert unit_value("Service", "EnvironmentFile").startswith("-")


def test_unit_hardening():
    service = dict(unit_sections()["Service"])
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "UMask": "0077",
    }.items():
        assert service.get(key) == value, f"{key}={service.get(key)!r}, expected {value!r}"
    assert service.get("User") not in (None, "root", "0") or service.get("DynamicUser") == "yes"
    # Forbids the W^X exceptions cffi/libffi callbacks need: only with proof from a full
    # test run under it (see the comment in the unit).
    assert service.get("MemoryDenyWriteExecute", "no") == "no"


def test_unit_mentions_only_known_variables():
    mentioned = set(VARIABLE.findall(UNIT.read_text()))
    assert mentioned <= known_variables(), sorted(mentioned - known_variables())


def _verify(unit_text: str, directory: Path) -> tuple[int, list[str]]:
    """Run ``systemd-analyze verify`` on a copy; the exit code and the lines about it."""
    path = directory / "triaged.service"
    path.write_text(unit_text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, [line for line in lines if "triaged.service" in line]


def _with_existing_binary(text: str) -> str:
    # The daemon is not installed at the unit's path here: point ExecStart at a binary that
    # exists, keeping the arguments, so that everything else gets verified.
    binary = Path(shutil.which("true") or "/bin/true").resolve()
    return re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={binary}", text)


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@needs_systemd_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path):
    returncode, complaints = _verify(_with_existing_binary(UNIT.read_text()), tmp_path)
    assert returncode == 0, complaints
    assert complaints == []


@needs_systemd_analyze
def test_systemd_analyze_verify_reports_bad_keys(tmp_path):
    # verify exits 0 on unknown keys and only prints a warning: make sure the check above
    # would see one.
    text = re.sub(
        r"(?m)^\[Service\]$",
        "[Service]\nStartLimitIntervalSec=10",
        _with_existing_binary(UNIT.read_text()),
        count=1,
    )
    _, complaints = _verify(text, tmp_path)
    assert any("StartLimitIntervalSec" in line for line in complaints), complaints
