"""Deployment files and notebooks, checked without Docker, Kubernetes or a Jetson.

What can be checked here is checked against the real code: every `inspection ...` command line in
deploy/ (compose, Kubernetes, systemd, READMEs) is parsed by the CLI's own click parser; the
environment each one sets is loaded into `Settings` together with the site profile it mounts;
Kafka's size limits admit the largest record the configuration allows; the analysis notebook's SQL
(inspection/analytics/queries/) runs on freshly migrated SQLite and PostgreSQL databases with known rows.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import yaml
from sqlalchemy import create_engine
from typer.main import get_command

import inspection.cli
from inspection.config import ENV_PREFIX, ConfigError, Settings, StoreConfig, load_settings
from inspection.detections import Detections
from inspection.kafka.admin import topic_max_message_bytes
from inspection.messages.frame_id import FrameId
from inspection.store import FrameRecord, ResultStore, upgrade_database
from inspection.store.db import create_engine_for
from tests.integration.conftest_store import postgres_server_url, postgres_url  # noqa: F401 (fixtures)
from tests.sources import parse_python

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
NOTEBOOKS = REPO / "notebooks"
CONFIGS = REPO / "configs"
COMPOSE = DEPLOY / "docker-compose.yml"
COMPOSE_TENSORRT = DEPLOY / "docker-compose.tensorrt.yml"
K8S = DEPLOY / "k8s"
UNIT = DEPLOY / "jetson" / "inspection-edge.service"
JETSON_ENV = DEPLOY / "jetson" / "edge.env"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
# Paths the images and hosts use (Dockerfile: COPY configs /etc/inspection/configs; every
# deployment mounts its profile at SITE_CONFIG).
SITE_CONFIG = "/etc/inspection/site.yaml"
IMAGE_CONFIGS = "/etc/inspection/configs/"
JETSON_PROFILE = CONFIGS / "jetson.yaml"  # what deploy/jetson/README.md installs as SITE_CONFIG


def _yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"notebooks_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- command lines


@dataclass
class CommandLine:
    """One `inspection ...` invocation found in a deployment file, with what it runs under."""

    source: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    config: Path | None = None  # the profile on this machine that --config points to in place
    image: str | None = None

    @property
    def id(self) -> str:
        return f"{self.source}: {' '.join(self.argv[:3])}"

    def option(self, name: str) -> str | None:
        return self.argv[self.argv.index(name) + 1] if name in self.argv else None


_COMPOSE_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _compose_interpolate(text: str) -> str:
    """Compose's ${VAR:-default} with nothing set: the default (a variable without one would be empty)."""

    def sub(match: re.Match[str]) -> str:
        assert match.group(2) is not None, f"{text!r}: ${{{match.group(1)}}} has no default; give it one (${{VAR:-value}})"
        return match.group(2)

    return _COMPOSE_VAR.sub(sub, text)


def _env_dict(environment: Any) -> dict[str, str]:
    if environment is None:
        return {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def _merge_compose(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """The parts of `docker compose -f base -f override` merging these files use: mappings merge,
    `environment` merges by name, `volumes` by container path, other values are replaced."""
    merged = json.loads(json.dumps(base))
    for name, service in override.get("services", {}).items():
        target = merged["services"].setdefault(name, {})
        for key, value in service.items():
            if key == "environment":
                target[key] = {**_env_dict(target.get(key)), **_env_dict(value)}
            elif key == "volumes":
                by_target = {str(v).split(":")[1]: v for v in target.get(key, [])}
                by_target.update({str(v).split(":")[1]: v for v in value})
                target[key] = list(by_target.values())
            elif isinstance(value, dict) and isinstance(target.get(key), dict):
                target[key] = {**target[key], **value}
            else:
                target[key] = value
    return merged


def _host_config(container_path: str, mounts: dict[str, Path]) -> Path | None:
    if container_path in mounts:
        return mounts[container_path]
    if container_path.startswith(IMAGE_CONFIGS):
        return CONFIGS / container_path[len(IMAGE_CONFIGS) :]
    return None


def _compose_commands(compose: dict[str, Any], label: str) -> list[CommandLine]:
    found = []
    for name, service in compose["services"].items():
        image = service.get("image", "")
        if "build" not in service and not image.startswith("inspection:"):
            continue
        entrypoint = service.get("entrypoint") or ["inspection"]
        argv = [_compose_interpolate(str(a)) for a in [*entrypoint, *service.get("command", [])]]
        mounts = {}
        for volume in service.get("volumes", []):
            parts = _compose_interpolate(str(volume)).split(":")
            if parts[0].startswith("."):
                mounts[parts[1]] = (DEPLOY / parts[0]).resolve()
        env = {k: _compose_interpolate(v) for k, v in _env_dict(service.get("environment")).items()}
        config = argv[argv.index("--config") + 1] if "--config" in argv else None
        found.append(CommandLine(f"{label} service {name}", argv, env, _host_config(config, mounts) if config else None, image))
    return found


def _k8s_docs() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in _yaml_docs(path)]


def _k8s_objects(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in _k8s_docs() if doc.get("kind") == kind}


def _k8s_commands(tmp_dir: Path) -> list[CommandLine]:
    config_maps = _k8s_objects("ConfigMap")
    secrets = _k8s_objects("Secret")
    found = []
    for workload in [*_k8s_objects("Deployment").values(), *_k8s_objects("Job").values()]:
        pod = workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            if container.get("command", [None])[0] != "inspection":
                continue  # a third-party image (the MQTT broker)
            env: dict[str, str] = {}
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    env.update(config_maps[source["configMapRef"]["name"]]["data"])
                if "secretRef" in source:
                    env.update(secrets[source["secretRef"]["name"]]["stringData"])
            env.update({e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e})
            argv = [*container.get("command", []), *container.get("args", [])]
            argv = [re.sub(r"\$\((\w+)\)", lambda m, env=env: env[m.group(1)], str(a)) for a in argv]
            mounts = {}
            for mount in container.get("volumeMounts", []):
                volume = volumes[mount["name"]]
                if "configMap" in volume:
                    data = config_maps[volume["configMap"]["name"]]["data"]
                    key = mount.get("subPath")
                    assert key, f"{workload['metadata']['name']}: mount the profile with subPath (a file, not a folder)"
                    path = tmp_dir / f"{volume['configMap']['name']}-{key}"
                    path.write_text(data[key])
                    mounts[mount["mountPath"]] = path
            config = argv[argv.index("--config") + 1] if "--config" in argv else None
            found.append(
                CommandLine(
                    f"k8s {workload['kind']} {workload['metadata']['name']}",
                    argv,
                    env,
                    _host_config(config, mounts) if config else None,
                    container["image"],
                )
            )
    return found


def _unit_entries(path: Path) -> dict[str, list[str]]:
    """key -> values of a systemd unit (keys may repeat; sections do not matter here)."""
    entries: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            entries.setdefault(key.strip(), []).append(value.strip())
    return entries


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))


def _systemd_commands() -> list[CommandLine]:
    entries = _unit_entries(UNIT)
    env = _env_file(JETSON_ENV)
    found = []
    for exec_start in entries["ExecStart"]:
        argv = shlex.split(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], exec_start))
        assert Path(argv[0]).name == "inspection", f"{UNIT.name}: ExecStart runs {argv[0]}, expected the inspection script"
        config = argv[argv.index("--config") + 1] if "--config" in argv else None
        found.append(
            CommandLine(
                f"{UNIT.name} ExecStart", ["inspection", *argv[1:]], env, JETSON_PROFILE if config == SITE_CONFIG else None
            )
        )
    return found


def _markdown_commands(path: Path) -> list[CommandLine]:
    """`inspection ...` lines of the fenced code blocks (with `\\` continuations and VAR=value prefixes)."""
    found = []
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", path.read_text(), flags=re.S | re.M)
    for block in blocks:
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            env = {}
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                key, value = words.pop(0).split("=", 1)
                env[key] = value
            if words and words[0] == "inspection":
                found.append(CommandLine(f"{path.relative_to(REPO)}", words, env))
    return found


def _all_commands(tmp_dir: Path) -> list[CommandLine]:
    compose = yaml.safe_load(COMPOSE.read_text())
    with_trt = _merge_compose(compose, yaml.safe_load(COMPOSE_TENSORRT.read_text()))
    docs = [*sorted(DEPLOY.rglob("*.md")), *sorted(NOTEBOOKS.glob("*.md"))]
    return [
        *_compose_commands(compose, COMPOSE.name),
        *_compose_commands(with_trt, f"{COMPOSE.name}+{COMPOSE_TENSORRT.name}"),
        *_k8s_commands(tmp_dir),
        *_systemd_commands(),
        *(command for doc in docs for command in _markdown_commands(doc)),
    ]


@pytest.fixture(scope="module")
def commands(tmp_path_factory: pytest.TempPathFactory) -> list[CommandLine]:
    found = _all_commands(tmp_path_factory.mktemp("k8s-profiles"))
    assert found, "no `inspection ...` command line found in deploy/"
    return found


def _check_cli(argv: list[str]) -> None:
    """Parse `argv` with the real CLI (subcommands, option names, types, required options); nothing runs."""
    assert argv[0] == "inspection"
    command: Any = get_command(inspection.cli.app)
    path = ["inspection"]
    args = list(argv[1:])
    while hasattr(command, "commands"):  # a group: the next word names a subcommand
        name = args.pop(0) if args else None
        if name not in command.commands:
            if path == ["inspection", "model"] and name == "build-engine":
                pytest.skip(
                    "`inspection model build-engine` is not in inspection/cli/ yet (being added); "
                    "its use in deploy/jetson/README.md is checked once it exists"
                )
            raise AssertionError(f"`{' '.join(path)}` has no subcommand {name!r}; it has: {', '.join(sorted(command.commands))}")
        command = command.commands[name]
        path.append(name)
    try:
        command.make_context(" ".join(path), args)
    except Exception as exc:  # click's UsageError / BadParameter, raised by the parser
        raise AssertionError(f"`{' '.join(argv)}` is not a valid command line: {exc}") from None


def _is_build_engine(command: CommandLine) -> bool:
    return command.argv[1:3] == ["model", "build-engine"]


def test_deployment_command_lines_parse_with_the_real_cli(commands: list[CommandLine]) -> None:
    checked = [c for c in commands if not _is_build_engine(c)]  # next test: that command may not exist yet
    assert checked
    for command in checked:
        _check_cli(command.argv)


def test_build_engine_command_in_jetson_guide_parses() -> None:
    lines = [c for c in _markdown_commands(DEPLOY / "jetson" / "README.md") if _is_build_engine(c)]
    assert lines, "deploy/jetson/README.md should show `inspection model build-engine ... --precision int8`"
    for command in lines:
        assert command.option("--precision") == "int8"
        _check_cli(command.argv)


def test_expected_programs_are_deployed(commands: list[CommandLine]) -> None:
    subcommands = {(c.source.split(" ")[0], tuple(c.argv[1:3])) for c in commands}
    compose = {sub for source, sub in subcommands if source == COMPOSE.name}
    assert {("db", "upgrade"), ("produce", "--bootstrap"), ("edge", "--bootstrap")} <= compose
    kinds = {c.source for c in commands if c.source.startswith("k8s")}
    assert any("Deployment" in k for k in kinds) and any("Job" in k for k in kinds)


def test_environment_and_profiles_validate_as_settings(commands: list[CommandLine]) -> None:
    """Each deployment's INSPECTION__ variables, layered on the profile it mounts, are valid Settings."""
    for command in commands:
        env = {k: v for k, v in command.env.items() if k.startswith(ENV_PREFIX)}
        if "--config" in command.argv and not command.source.endswith(".md"):
            assert command.config is not None and command.config.is_file(), (
                f"{command.id}: --config {command.option('--config')} is not mounted from a file of this repository"
            )
        settings = load_settings(command.config, environ=env)
        if command.argv[1] == "edge" and command.image:
            # the image must be able to run the backend the configuration asks for
            tag = command.image.rsplit(":", 1)[-1]
            assert settings.model.backend in tag, f"{command.id}: image {command.image} runs backend {settings.model.backend}"


def test_env_files_name_real_settings() -> None:
    env = _env_file(JETSON_ENV)
    assert any(k.startswith(ENV_PREFIX) for k in env)
    load_settings(JETSON_PROFILE, environ=env)
    for config_map in _k8s_objects("ConfigMap").values():
        data = {k: v for k, v in config_map["data"].items() if k.startswith(ENV_PREFIX)}
        load_settings(environ=data)


def test_edge_runs_with_a_metrics_port_that_prometheus_and_probes_use(commands: list[CommandLine]) -> None:
    edges = [c for c in commands if c.argv[1] == "edge" and not c.source.endswith(".md")]
    assert edges
    ports = {c.source: c.option("--metrics-port") for c in edges}
    assert all(p and int(p) > 0 for p in ports.values()), ports
    compose_port = ports[f"{COMPOSE.name} service edge"]
    targets = [
        t
        for job in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]
        for sc in job["static_configs"]
        for t in sc["targets"]
    ]
    assert f"localhost:{compose_port}" in targets
    deployment = _k8s_objects("Deployment")["inspection-edge"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    k8s_port = ports["k8s Deployment inspection-edge"]
    assert {p["containerPort"] for p in container["ports"]} == {int(k8s_port)}
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    # The kubelet probes the pod's IP: the edge must listen beyond 127.0.0.1 there.
    k8s_edge = next(c for c in edges if c.source == "k8s Deployment inspection-edge")
    assert k8s_edge.option("--metrics-addr") == "0.0.0.0"
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and named.get(get["port"], get["port"]) == int(k8s_port), (probe, get)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == k8s_port and annotations["prometheus.io/scrape"] == "true"


def test_keda_scales_the_edge_deployment_on_its_own_consumer_group_lag() -> None:
    """The ScaledObject is a valid KEDA v2 manifest for this site: the right Deployment, the
    profile's topic and group, the ConfigMap's brokers, never more pods than partitions."""
    (scaled,) = _k8s_objects("ScaledObject").values()
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    allowed = {
        "scaleTargetRef",
        "minReplicaCount",
        "maxReplicaCount",
        "pollingInterval",
        "cooldownPeriod",
        "idleReplicaCount",
        "advanced",
        "triggers",
        "fallback",
        "initialCooldownPeriod",
    }
    assert set(spec) <= allowed, set(spec) - allowed
    target = spec["scaleTargetRef"]
    deployment = _k8s_objects("Deployment")[target["name"]]
    assert (target.get("apiVersion", "apps/v1"), target.get("kind", "Deployment")) == (
        deployment["apiVersion"],
        deployment["kind"],
    )
    site = _k8s_objects("ConfigMap")["inspection-site"]["data"]["site.yaml"]
    env = _k8s_objects("ConfigMap")["inspection-env"]["data"]
    settings = load_settings(
        environ={k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
        | {f"{ENV_PREFIX}KAFKA__{k.upper()}": str(v) for k, v in yaml.safe_load(site)["kafka"].items()}
    )
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= settings.kafka.partitions
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata values are strings"
    known = {
        "bootstrapServers",
        "consumerGroup",
        "topic",
        "lagThreshold",
        "activationLagThreshold",
        "offsetResetPolicy",
        "allowIdleConsumers",
        "scaleToZeroOnInvalidOffset",
        "excludePersistentLag",
        "limitToPartitionsWithLag",
        "partitionLimitation",
        "version",
        "sasl",
        "tls",
    }
    assert set(meta) <= known, set(meta) - known
    assert meta["bootstrapServers"] == env["KAFKA_BOOTSTRAP"]
    assert (meta["consumerGroup"], meta["topic"]) == (settings.kafka.group_id, settings.kafka.topic)
    assert int(meta["lagThreshold"]) > 0 and meta["offsetResetPolicy"] in ("earliest", "latest")
    assert meta["allowIdleConsumers"] == "false"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert "keda-scaledobject.yaml" not in kustomization["resources"], "applied separately: it needs KEDA's CRDs"


def test_kafka_accepts_the_largest_record() -> None:
    """Broker and replication limits admit a frame of kafka.message_max_bytes and its dead letter."""
    kafka = yaml.safe_load(COMPOSE.read_text())["services"]["kafka"]
    env = _env_dict(kafka["environment"])
    profiles = [Settings(), *(load_settings(p, environ={}) for p in sorted(CONFIGS.glob("*.yaml")))]
    largest_frame = max(s.kafka.message_max_bytes for s in profiles)
    largest_record = max(topic_max_message_bytes(s.kafka, dlq=True) for s in profiles)
    for key in ("KAFKA_MESSAGE_MAX_BYTES", "KAFKA_REPLICA_FETCH_MAX_BYTES"):
        assert int(env[key]) >= largest_frame, f"{key}={env[key]} < kafka.message_max_bytes {largest_frame}"
        assert int(env[key]) >= largest_record, f"{key}={env[key]} < largest dead-letter record {largest_record}"
    assert "broker" in env["KAFKA_PROCESS_ROLES"] and "controller" in env["KAFKA_PROCESS_ROLES"], "KRaft mode"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    for command in _compose_commands(yaml.safe_load(COMPOSE.read_text()), COMPOSE.name):
        if command.option("--bootstrap") is not None:
            assert command.option("--bootstrap") == "kafka:9092", command.id


def test_edge_stops_gracefully_everywhere() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    edge = compose["edge"]
    assert edge["stop_signal"] == "SIGTERM"
    assert int(edge["stop_grace_period"].rstrip("s")) >= 30
    devices = edge["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert compose["migrate"]["command"][:2] == ["db", "upgrade"]
    deployment = _k8s_objects("Deployment")["inspection-edge"]["spec"]
    assert deployment["template"]["spec"]["terminationGracePeriodSeconds"] >= 60
    container = deployment["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    entries = _unit_entries(UNIT)
    assert entries["KillSignal"] == ["SIGTERM"]
    assert entries["Restart"] == ["on-failure"]
    timeout = entries["TimeoutStopSec"][0]
    assert re.fullmatch(r"\d+s?", timeout) and int(timeout.rstrip("s")) >= 30, f"TimeoutStopSec={timeout}"
    assert [Path(p).name for p in entries["EnvironmentFile"]] == [JETSON_ENV.name]


def test_jetson_guide_installs_the_jetson_profile() -> None:
    text = (DEPLOY / "jetson" / "README.md").read_text()
    assert f"configs/{JETSON_PROFILE.name} {SITE_CONFIG}" in text
    profile = load_settings(JETSON_PROFILE, environ={})
    assert (profile.model.backend, profile.model.precision) == ("tensorrt", "int8")


@pytest.mark.parametrize(
    "path", sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")]), ids=lambda p: str(p.relative_to(DEPLOY))
)
def test_deploy_yaml_parses(path: Path) -> None:
    docs = _yaml_docs(path)
    assert docs and all(isinstance(doc, dict) for doc in docs)
    if path.parent == K8S:
        for doc in docs:
            assert {"apiVersion", "kind"} <= doc.keys(), f"{path.name}: a document without apiVersion/kind"


def test_kustomization_lists_existing_manifests() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    assert "secret.example.yaml" not in kustomization["resources"], "no password in an applied manifest"


# --------------------------------------------------------------------------- notebooks

NOTEBOOK_FILES = sorted(NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.name)
def test_notebook_is_valid_nbformat4_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4 and isinstance(nb["nbformat_minor"], int)
    assert nb["metadata"]["kernelspec"]["language"] == "python"
    assert nb["cells"]
    for cell in nb["cells"]:
        assert cell["cell_type"] in ("markdown", "code")
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, "notebooks are committed unexecuted"
            parse_python(source)
    try:
        import nbformat
    except ImportError:
        return
    nbformat.validate(nbformat.reads(path.read_text(), as_version=4))


def test_notebooks_exist() -> None:
    assert {p.name for p in NOTEBOOK_FILES} >= {"results_analysis.ipynb", "benchmarks.ipynb"}


def _code(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def test_analysis_notebook_uses_only_queries_of_the_module() -> None:
    from inspection.analytics import queries

    code = _code(NOTEBOOKS / "results_analysis.ipynb")
    assert "from inspection.analytics import queries" in code, "the notebook reads the package's read layer"
    used = set(re.findall(r"queries\.([A-Z_]+)\b", code))
    defined = {name for name in dir(queries) if isinstance(getattr(queries, name), queries.Query)}
    assert used and used <= defined, used - defined
    assert {id(q) for q in queries.ALL_QUERIES} == {id(getattr(queries, name)) for name in defined}
    assert len({q.name for q in queries.ALL_QUERIES}) == len(queries.ALL_QUERIES)
    assert queries.db_url({}) == "sqlite:///inspection.db"
    assert queries.db_url({"INSPECTION__STORE__URL": "postgresql+psycopg://x@h/db"}) == "postgresql+psycopg://x@h/db"
    with pytest.raises(ConfigError, match="INSPECTION_DB is now INSPECTION__STORE__URL"):
        queries.db_url({"INSPECTION_DB": "postgresql+psycopg://x@h/db"})


@pytest.fixture(scope="module")
def queries() -> ModuleType:
    from inspection.analytics import queries as module

    return module


# every bind parameter any query of the read layer takes
ANY_PARAMS = {
    "car_id": "c1",
    "frame_id": 1,
    "since": datetime(2000, 1, 1, tzinfo=timezone.utc),
    "until": datetime(2100, 1, 1, tzinfo=timezone.utc),
    "start_s": 946_684_800.0,
    "width_s": 60.0,
    "car_ids": ["c1", "c2"],
    "frame_ids": [1, 2],
    "review_ids": [],  # an empty list too
    "review_id": 1,
    "near_below": 0.5,
    "model": "m",
    "after_captured_at": datetime(2100, 1, 1, tzinfo=timezone.utc),
    "after_key": 0,
}


# aggregates without GROUP BY: one row even on an empty database
ONE_ROW_QUERIES = {
    "car_count",
    "table_counts",
    "latest_capture",
    "capture_span",
    "frames_processed_since",
    "last_processed",
    "change_mark",
    "parked_since",
}


def _run_all_on_empty(url: str, queries: ModuleType) -> None:
    upgrade_database(url)
    engine = create_engine_for(url)
    try:
        with engine.connect() as conn:
            for query in queries.ALL_QUERIES:
                rows = queries.run(conn, query, **ANY_PARAMS)
                assert len(rows) == (1 if query.name in ONE_ROW_QUERIES else 0), query.name
    finally:
        engine.dispose()


def test_every_query_runs_on_a_freshly_migrated_sqlite(tmp_path: Path, queries: ModuleType) -> None:
    _run_all_on_empty(f"sqlite:///{tmp_path / 'fresh.db'}", queries)


@pytest.mark.postgres
def test_every_query_runs_on_a_freshly_migrated_postgresql(postgres_url: str, queries: ModuleType) -> None:  # noqa: F811
    _run_all_on_empty(postgres_url, queries)


T0_NS = 1_700_000_000 * 10**9
S_NS = 10**9
CLASS_NAMES = {1: "person", 3: "car"}


def _populate(url: str) -> None:
    """Three cars of 2 cameras × 2 shots: c1 on time (one error frame), c2 late, c3 incomplete;
    one rejected message."""
    with ResultStore.open(StoreConfig(url=url, image_dir=None)) as store:
        run_id = store.start_run("ssd_mobilenet_v2_coco", "onnxruntime", "fp32", "cafe", host="h", consumer_id="h:1")

        def record(car: str, cam: int, shot: int, first_ns: int, deadline_ns: int, processed_ns: int) -> FrameRecord:
            captured = first_ns + (2 * cam + shot) * S_NS
            return FrameRecord(
                FrameId(car, cam, shot, 4),
                captured,
                deadline_ns,
                captured + S_NS // 10,
                processed_ns,
                run_id,
                kafka_topic="frames",
                kafka_partition=cam,
                kafka_offset=2 * cam + shot,
            )

        def boxes(*items: tuple[int, float]) -> Detections:
            n = len(items)
            return Detections(np.tile([10.0, 10.0, 50.0, 60.0], (n, 1)), [s for _, s in items], [c for c, _ in items])

        c1 = T0_NS
        store.store_frame(record("c1", 0, 0, c1, c1 + 60 * S_NS, c1 + 2 * S_NS), boxes((1, 0.9), (1, 0.8), (1, 0.2)), CLASS_NAMES)
        store.store_frame(record("c1", 0, 1, c1, c1 + 60 * S_NS, c1 + 3 * S_NS), boxes((3, 0.7), (1, 0.5)), CLASS_NAMES)
        store.store_frame(record("c1", 1, 0, c1, c1 + 60 * S_NS, c1 + 4 * S_NS), boxes(), CLASS_NAMES)
        store.store_error(record("c1", 1, 1, c1, c1 + 60 * S_NS, c1 + 5 * S_NS), "decode", "not a JPEG")
        c2 = T0_NS + 60 * S_NS
        for cam, shot in ((0, 0), (0, 1), (1, 0), (1, 1)):
            store.store_frame(record("c2", cam, shot, c2, c2 + 5 * S_NS, c2 + 10 * S_NS), boxes((3, 0.95)), CLASS_NAMES)
        c3 = T0_NS + 120 * S_NS
        store.store_frame(record("c3", 0, 0, c3, c3 + 60 * S_NS, c3 + 2 * S_NS), boxes(), CLASS_NAMES)
        store.store_rejected("frames", 4, 17, b"\xff", "headers", "no car_id header", T0_NS, run_id)


def _check_populated(url: str, queries: ModuleType) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            cars = {r.car_id: r for r in queries.run(conn, queries.CARS)}
            assert {k: r.status for k, r in cars.items()} == {"c1": "met", "c2": "missed", "c3": "overdue"}
            before_deadline = datetime.fromtimestamp((T0_NS + 130 * S_NS) / 1e9, tz=timezone.utc)
            assert queries.run(conn, queries.CARS, now=before_deadline)[-1].status == "in_flight"
            assert cars["c1"].deadline_met is True and cars["c2"].deadline_met is False
            assert (cars["c1"].error_frames, cars["c1"].boxes, cars["c2"].boxes, cars["c3"].boxes) == (1, 5, 4, 0)
            assert cars["c1"].lateness_s == pytest.approx(-55.0) and cars["c2"].lateness_s == pytest.approx(5.0)
            assert cars["c3"].lateness_s is None

            frames = queries.run(conn, queries.FRAME_LATENCY)
            assert len(frames) == 9 and {r.consumer_id for r in frames} == {"h:1"}
            assert max(r.latency_s for r in frames) == pytest.approx(10.0)

            per_class = {r.class_name: (r.boxes, r.frames) for r in queries.run(conn, queries.DETECTIONS_PER_CLASS)}
            assert per_class == {"person": (4, 2), "car": (5, 5)}
            strict = {r.class_name: r.boxes for r in queries.run(conn, queries.DETECTIONS_PER_CLASS, min_score=0.6)}
            assert strict == {"person": 2, "car": 5}

            # the detections filter: each condition applied only when its parameter is given
            counts = {r.class_name: r.boxes for r in queries.run(conn, queries.DETECTION_CLASS_COUNTS)}
            assert counts == {"person": 4, "car": 5}
            c1_cam0 = queries.run(conn, queries.DETECTION_CLASS_COUNTS, car_id="c1", camera=0, min_score=0.6)
            assert {r.class_name: r.boxes for r in c1_cam0} == {"person": 2, "car": 1}
            cars_only = queries.run(conn, queries.DETECTION_PAGE, class_name="car", limit=3)
            assert [(r.car_id, r.class_name) for r in cars_only] == [("c2", "car")] * 3  # newest capture first
            window = {"since": cars["c2"].first_captured_at, "until": cars["c2"].first_captured_at}
            assert [(r.car_id, r.camera, r.shot) for r in queries.run(conn, queries.DETECTION_EXPORT, **window)] == [("c2", 0, 0)]
            cells = {(r.camera, r.shot): r for r in queries.run(conn, queries.CAMERA_SHOT_COUNTS)}
            assert (cells[0, 0].frames, cells[0, 0].boxes) == (3, 4)
            assert cells[0, 0].mean_boxes == pytest.approx(4 / 3)
            assert cells[1, 1].error_frames == 1 and sum(c.boxes for c in cells.values()) == 9

            errors = [(r.car_id, r.camera, r.shot, r.error_kind) for r in queries.run(conn, queries.ERROR_FRAMES)]
            assert errors == [("c1", 1, 1, "decode")]
            by_kind = [tuple(r) for r in queries.run(conn, queries.ERRORS_BY_KIND)]
            assert by_kind == [("frame", "decode", 1), ("rejected", "headers", 1)]
            rejected = queries.run(conn, queries.REJECTED_MESSAGES)
            assert [(r.kafka_partition, r.kafka_offset, r.error_kind) for r in rejected] == [(4, 17, "headers")]
            runs = queries.run(conn, queries.RUNS)
            assert [(r.consumer_id, r.frames) for r in runs] == [("h:1", 9)]
    finally:
        engine.dispose()


def test_queries_give_the_stored_facts_on_sqlite(tmp_path: Path, queries: ModuleType) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    _populate(url)
    _check_populated(url, queries)


@pytest.mark.postgres
def test_queries_give_the_stored_facts_on_postgresql(postgres_url: str, queries: ModuleType) -> None:  # noqa: F811
    _populate(postgres_url)
    _check_populated(postgres_url, queries)


def test_read_df_parses_times_and_booleans(tmp_path: Path, queries: ModuleType) -> None:
    pd = pytest.importorskip("pandas", reason="pandas is the notebooks' dependency (pip install pandas)")
    url = f"sqlite:///{tmp_path / 'results.db'}"
    _populate(url)
    engine = create_engine(url)
    try:
        cars = queries.read_df(engine, queries.CARS).set_index("car_id")
    finally:
        engine.dispose()
    assert isinstance(cars["deadline_at"].dtype, pd.DatetimeTZDtype)
    assert (cars.loc["c1", "deadline_at"] - cars.loc["c1", "first_captured_at"]).total_seconds() == 60
    assert cars.loc["c1", "deadline_met"] is True or bool(cars.loc["c1", "deadline_met"]) is True
    assert not bool(cars.loc["c2", "deadline_met"]) and pd.isna(cars.loc["c3", "deadline_met"])


def test_bench_loader_reads_what_inspection_bench_writes(tmp_path: Path) -> None:
    from inspection.tools.bench import BenchRow, write_results

    bench_results = _load_module(NOTEBOOKS / "bench_results.py")
    rows = [
        BenchRow(
            "ssd_mobilenet_v2_coco",
            "onnxruntime",
            "fp32",
            "cpu",
            "batched",
            b,
            100.0 / b,
            90.0 / b,
            63 * b / 10,
            300.0 + b,
            "rss",
            3,
        )
        for b in (1, 64)
    ]
    write_results(rows, tmp_path / "benchmarks" / "cpu", "inspection bench", {"gpu": None, "cpu_model": "Xeon"})
    write_results(rows[:1], tmp_path / "benchmarks" / "h100" / "torch", "inspection bench", {"gpu": "NVIDIA H100"})
    files = bench_results.find_bench_files(tmp_path / "benchmarks")
    assert [f.parent.name for f in files] == ["cpu", "torch"]
    loaded = bench_results.load_rows(files, root=tmp_path / "benchmarks")
    assert [(r["source"], r["machine"], r["batch_size"], r["frame_ms"], r["peak_mem_mib"]) for r in loaded] == [
        ("cpu", "Xeon", 1, 100.0, 301.0),
        ("cpu", "Xeon", 64, 100.0 / 64, 364.0),
        ("h100/torch", "NVIDIA H100", 1, 100.0, 301.0),
    ]
    (tmp_path / "other.json").write_text("[]")
    with pytest.raises(ValueError, match="not an `inspection bench` result"):
        bench_results.load_rows([tmp_path / "other.json"])


def test_the_line_signal_is_deployed_with_mosquitto_and_the_opcua_port(commands: list[CommandLine]) -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:") and "8883:8883" in services["mosquitto"]["ports"]
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "listener 8883" in conf and "certfile" in conf
    assert "4840:4840" in services["signal"]["ports"]
    signal = [c for c in commands if c.argv[1:2] == ["signal"]]
    assert {c.source.split(" ")[0] for c in signal} >= {COMPOSE.name} and any(c.source.startswith("k8s") for c in signal)
    for command in signal:  # both deployments: MQTT over TLS with a user, OPC UA encrypted, off loopback
        settings = load_settings(command.config, environ={k: v for k, v in command.env.items() if k.startswith(ENV_PREFIX)})
        mqtt, opcua = settings.signal.mqtt, settings.signal.opcua
        assert mqtt.enabled and mqtt.tls and mqtt.username and not mqtt.insecure, command.id
        assert opcua.enabled and opcua.security == "Basic256Sha256" and opcua.port == 4840 and not opcua.insecure, command.id
        assert command.option("--metrics-port") == "9110"
    jobs = {j["job_name"]: j for j in yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]}
    assert jobs["inspection-signal"]["static_configs"][0]["targets"] == ["signal:9110"]
    services_k8s = {m["metadata"]["name"]: m for m in _k8s_objects("Service").values()}
    assert {p["port"] for p in services_k8s["inspection-signal"]["spec"]["ports"]} == {4840}
    assert {p["port"] for p in services_k8s["inspection-mosquitto"]["spec"]["ports"]} == {8883}
