"""Settings of ``meshd run``: precedence, validation, and the CLI's exit status 2."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh.daemon.cli import build_parser, main
from mesh.daemon.flags import OPTIONS, resolve
from mesh.daemon.values import ConfigError


def args(*argv: str) -> Any:
    return build_parser().parse_args(["run", *argv])


def write_config(tmp_path: Path, data: Any, name: str = "meshd.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _no_meshd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() reads os.environ: keep the runner's MESHD_* variables out of these tests."""
    for opt in OPTIONS:
        monkeypatch.delenv(opt.env, raising=False)


# ------------------------------------------------------------------------------ defaults


def test_defaults() -> None:
    values = resolve(args(), environ={})
    assert values["cluster_id"] is None
    assert values["manifests"] is None
    assert values["dns_listen"] == "0.0.0.0:53"
    assert values["dns_zone"] == "clusterset.local"
    assert values["dns_ttl"] == 5
    assert values["grpc_listen"] == "0.0.0.0:7946"
    assert values["admin_listen"] == "0.0.0.0:9090"
    assert values["join"] == ()
    assert values["insecure"] is False
    assert values["max_addresses"] == 8
    assert values["answer_mode"] == "endpoints"
    assert set(values) == {o.name for o in OPTIONS}


def test_option_names() -> None:
    for opt in OPTIONS:
        assert opt.flag == "--" + opt.name.replace("_", "-")
        assert opt.env == "MESHD_" + opt.name.upper()


# ---------------------------------------------------------------------------- precedence

# option, flag value, env value, file value, parsed flag, parsed env, parsed file, default
PRECEDENCE = [
    ("dns_ttl", "30", "20", 10, 30, 20, 10, 5),
    ("region", "us", "eu", "ap", "us", "eu", "ap", ""),
    (
        "join",
        "10.0.0.1:7946",
        "10.0.0.2:7946,10.0.0.3:7946",
        ["10.0.0.4:7946", "[fd00::4]:7946"],
        ("10.0.0.1:7946",),
        ("10.0.0.2:7946", "10.0.0.3:7946"),
        ("10.0.0.4:7946", "[fd00::4]:7946"),
        (),
    ),
    (
        "dns_zone",
        "Flag.Example.",
        "env.example",
        "file.example",
        "flag.example",
        "env.example",
        "file.example",
        "clusterset.local",
    ),
    ("gossip_interval", "1.5", "2", 0.75, 1.5, 2.0, 0.75, 0.25),
]


@pytest.mark.parametrize(
    ("name", "flag_raw", "env_raw", "file_raw", "flag_val", "env_val", "file_val", "default"),
    PRECEDENCE,
    ids=[row[0] for row in PRECEDENCE],
)
def test_precedence_flag_env_file_default(
    tmp_path: Path,
    name: str,
    flag_raw: str,
    env_raw: str,
    file_raw: Any,
    flag_val: Any,
    env_val: Any,
    file_val: Any,
    default: Any,
) -> None:
    flag = "--" + name.replace("_", "-")
    env = {"MESHD_" + name.upper(): env_raw}
    config = str(write_config(tmp_path, {name: file_raw}))
    assert resolve(args(flag, flag_raw, "--config", config), environ=env)[name] == flag_val
    assert resolve(args("--config", config), environ=env)[name] == env_val
    assert resolve(args("--config", config), environ={})[name] == file_val
    assert resolve(args(), environ={})[name] == default
    assert resolve(args(flag, flag_raw), environ={})[name] == flag_val


def test_insecure_from_each_source(tmp_path: Path) -> None:
    on = str(write_config(tmp_path, {"insecure": True}))
    off = str(write_config(tmp_path, {"insecure": False}, "off.yaml"))
    assert resolve(args("--insecure"), environ={"MESHD_INSECURE": "false"})["insecure"] is True
    assert resolve(args("--config", on), environ={"MESHD_INSECURE": "no"})["insecure"] is False
    assert resolve(args("--config", off), environ={"MESHD_INSECURE": "1"})["insecure"] is True
    assert resolve(args("--config", on), environ={})["insecure"] is True
    assert resolve(args(), environ={})["insecure"] is False


def test_file_with_native_yaml_types(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "cluster_id: east\nregion: us\ndns_ttl: 0\nmax_addresses: 64\npeer_timeout: 600\n"
        "insecure: yes\njoin: [a.example:1, 'b.example:2']\nstate_dir: ~/meshd\n",
    )
    values = resolve(args("--config", str(config)), environ={})
    assert values["cluster_id"] == "east"
    assert values["dns_ttl"] == 0
    assert values["max_addresses"] == 64
    assert values["peer_timeout"] == 600.0
    assert values["insecure"] is True
    assert values["join"] == ("a.example:1", "b.example:2")
    assert values["state_dir"] == Path("~/meshd").expanduser()


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    config = write_config(tmp_path, "")
    assert resolve(args("--config", str(config)), environ={}) == resolve(args(), environ={})


def test_unrelated_environment_is_ignored() -> None:
    environ = {"MESHD": "x", "MESHD_UNKNOWN": "x", "DNS_TTL": "99999"}
    assert resolve(args(), environ=environ) == resolve(args(), environ={})


# ---------------------------------------------------------------------------- bad values

# option, bad value (as a string from any source)
BAD_VALUES = [
    ("dns_ttl", "3601"),
    ("dns_ttl", "-1"),
    ("dns_ttl", "abc"),
    ("dns_ttl", "5.5"),
    ("cluster_id", "Bad_Name"),
    ("cluster_id", ""),
    ("region", "Us East"),
    ("join", "nohost"),
    ("join", "10.0.0.1:7946,::1:53"),
    ("dns_listen", "::1:53"),
    ("dns_listen", "host:99999"),
    ("dns_advertise", "dns.example:53"),
    ("dns_advertise", "0.0.0.0:53"),
    ("grpc_listen", "host:"),
    ("admin_listen", "x"),
    ("dns_zone", "bad_zone..local"),
    ("gossip_interval", "0"),
    ("peer_timeout", "nan"),
    ("max_addresses", "0"),
    ("log_level", "loud"),
    ("insecure", "maybe"),
    ("answer_mode", "vip"),
]


def _check_error(exc: ConfigError, where: str, value: str) -> None:
    message = str(exc)
    assert "\n" not in message
    assert message.startswith(where), message
    assert repr(value) in message or value in message, message


# --insecure takes no value: its bad values can only come from the environment or a file.
@pytest.mark.parametrize(("name", "value"), [row for row in BAD_VALUES if row[0] != "insecure"])
def test_bad_flag_value(name: str, value: str) -> None:
    flag = "--" + name.replace("_", "-")
    with pytest.raises(ConfigError) as info:
        resolve(args(f"{flag}={value}"), environ={})
    _check_error(info.value, flag, value)


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_bad_environment_value(name: str, value: str) -> None:
    env = "MESHD_" + name.upper()
    with pytest.raises(ConfigError) as info:
        resolve(args(), environ={env: value})
    _check_error(info.value, env, value)


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_bad_file_value(tmp_path: Path, name: str, value: str) -> None:
    config = write_config(tmp_path, {name: value})
    with pytest.raises(ConfigError) as info:
        resolve(args("--config", str(config)), environ={})
    _check_error(info.value, name, value)
    assert str(config) in str(info.value)


def test_bad_value_from_lower_source_is_ignored_when_overridden(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"dns_ttl": "abc"})
    values = resolve(
        args("--dns-ttl", "7", "--config", str(config)), environ={"MESHD_DNS_TTL": "x"}
    )
    assert values["dns_ttl"] == 7


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        pytest.param("dns_tll: 5\n", r"unknown setting 'dns_tll'", id="unknown-key"),
        pytest.param("cluster-id: east\n", r"unknown setting 'cluster-id'", id="flag-spelling"),
        pytest.param("- cluster_id\n- east\n", r"must be a mapping", id="list"),
        pytest.param("just a string\n", r"must be a mapping", id="scalar"),
        pytest.param("cluster_id: [east\n", r"not valid YAML", id="invalid-yaml"),
        pytest.param("a: b: c\n", r"not valid YAML", id="invalid-yaml-2"),
    ],
)
def test_bad_file(tmp_path: Path, content: str, pattern: str) -> None:
    config = write_config(tmp_path, content)
    with pytest.raises(ConfigError, match=pattern) as info:
        resolve(args("--config", str(config)), environ={})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"--config {config}: ")


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        resolve(args("--config", str(missing)), environ={})
    assert str(info.value) == f"--config {missing}: No such file or directory"


def test_file_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(args("--config", str(tmp_path)), environ={})
    assert str(info.value).startswith(f"--config {tmp_path}: ")
    assert "\n" not in str(info.value)


def resolve_or_error(namespace: Any) -> dict[str, Any] | ConfigError:
    try:
        return resolve(namespace, environ={})
    except ConfigError as exc:
        return exc


# Values that YAML types as something other than a string. Each is either taken (as the
# string it spells) or refused with a ConfigError naming the key; it must never escape as
# a TypeError or AttributeError (which main() would print as a traceback, not exit 2).
@pytest.mark.parametrize(
    ("content", "key"),
    [
        pytest.param("cluster_id: 123\n", "cluster_id", id="int-label"),
        pytest.param("region: 1\n", "region", id="int-region"),
        pytest.param("dns_listen: 53\n", "dns_listen", id="int-host-port"),
        pytest.param("advertise: true\n", "advertise", id="bool-host-port"),
        pytest.param("dns_zone: null\n", "dns_zone", id="null-zone"),
        pytest.param("cluster_id: null\n", "cluster_id", id="null-label"),
        pytest.param("dns_zone: 5\n", "dns_zone", id="int-zone"),
    ],
)
def test_file_values_of_other_yaml_types(tmp_path: Path, content: str, key: str) -> None:
    config = write_config(tmp_path, content)
    outcome = resolve_or_error(args("--config", str(config)))
    if isinstance(outcome, ConfigError):
        assert str(outcome).startswith(f"{key} in {config}: ")
        assert "\n" not in str(outcome)
    else:
        raw = yaml.safe_load(content)[key]
        if raw is None:
            default = next(o.default for o in OPTIONS if o.name == key)
            assert outcome[key] == default
        else:
            assert outcome[key] == str(raw).lower()


def test_null_path_in_file_is_not_the_path_none(tmp_path: Path) -> None:
    config = write_config(tmp_path, "manifests: null\n")
    outcome = resolve_or_error(args("--config", str(config)))
    if isinstance(outcome, ConfigError):
        assert str(outcome).startswith(f"manifests in {config}: ")
    else:
        assert outcome["manifests"] is None


def test_file_not_utf8(tmp_path: Path) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes(b"region: \xe9t\xe9\n")
    with pytest.raises(ConfigError) as info:
        resolve(args("--config", str(config)), environ={})
    assert str(info.value).startswith(f"--config {config}: ")


# -------------------------------------------------------------------------------- main()


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["run", *argv])
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err


def _assert_one_error_line(err: str, pattern: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("meshd: error: "), err
    assert re.search(pattern, lines[0]), lines[0]


def test_main_missing_cluster_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(capsys, "--manifests", str(tmp_path), "--insecure")
    assert code == 2
    _assert_one_error_line(err, r"--cluster-id")


def test_main_missing_manifests(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(capsys, "--cluster-id", "east", "--insecure")
    assert code == 2
    _assert_one_error_line(err, r"--manifests")


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_main_manifests_not_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    target = tmp_path / "exports.yaml"
    if kind == "file":
        target.write_text("{}\n", encoding="utf-8")
    code, err = run_main(capsys, "--cluster-id", "east", "--manifests", str(target), "--insecure")
    assert code == 2
    _assert_one_error_line(err, rf"--manifests: {re.escape(str(target))} is not a directory")


@pytest.mark.parametrize("flag", ["--tls-cert", "--tls-key", "--tls-ca"])
def test_main_tls_not_available(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    code, err = run_main(
        capsys, "--cluster-id", "east", "--manifests", str(tmp_path), "--insecure", flag, "x.pem"
    )
    assert code == 2
    _assert_one_error_line(err, r"--tls-cert")


def test_main_requires_insecure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(capsys, "--cluster-id", "east", "--manifests", str(tmp_path))
    assert code == 2
    _assert_one_error_line(err, r"--insecure")


def test_main_kubeconfig_not_available(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(
        capsys, "--cluster-id", "east", "--kubeconfig", str(tmp_path / "k"), "--insecure"
    )
    assert code == 2
    _assert_one_error_line(err, r"--kubeconfig")


def test_main_bad_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(
        capsys,
        "--cluster-id",
        "east",
        "--manifests",
        str(tmp_path),
        "--insecure",
        "--dns-ttl",
        "3601",
    )
    assert code == 2
    _assert_one_error_line(err, r"--dns-ttl: .*'3601'")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_main_clusterset_ip_needs_the_kubernetes_source(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    extra = ["--answer-mode", "clusterset-ip"] if how == "flag" else []
    if how == "env":
        monkeypatch.setenv("MESHD_ANSWER_MODE", "clusterset-ip")
    code, err = run_main(
        capsys, "--cluster-id", "east", "--manifests", str(tmp_path), "--insecure", *extra
    )
    assert code == 2
    _assert_one_error_line(err, r"--answer-mode clusterset-ip needs the Kubernetes API source")


def test_main_bad_environment_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESHD_CLUSTER_ID", "Bad_Name")
    code, err = run_main(capsys, "--manifests", str(tmp_path), "--insecure")
    assert code == 2
    _assert_one_error_line(err, r"MESHD_CLUSTER_ID: .*'Bad_Name'")


def test_main_bad_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "dns_tll: 5\n")
    code, err = run_main(capsys, "--config", str(config))
    assert code == 2
    _assert_one_error_line(err, r"unknown setting 'dns_tll'")


def test_main_config_value_of_another_yaml_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, "dns_listen: 53\n")
    code, err = run_main(
        capsys, "--config", str(config), "--cluster-id", "east", "--manifests", str(tmp_path)
    )
    assert code == 2
    _assert_one_error_line(err, r"dns_listen")


def test_run_help_mentions_every_flag_and_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out
    # Each option's own entry (from its flag to the next option) names its variable.
    entries = re.split(r"\n  (?=-)", out)
    for opt in OPTIONS:
        mine = [e for e in entries if e.startswith(opt.flag + " ") or e.startswith(opt.flag + "\n")]
        assert len(mine) == 1, (opt.flag, out)
        assert opt.env in mine[0], (opt.env, mine[0])
