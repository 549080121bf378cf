"""Choosing the source from the settings: --manifests, --kubeconfig, or in-cluster in a pod."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.daemon.agent import AgentSettings, make_source
from mesh.daemon.cli import UsageError, build_parser, settings_from
from mesh.daemon.flags import resolve
from mesh.kube.source import KubernetesSource
from mesh.sources.manifests import ManifestSource


def settings(argv: list[str]) -> AgentSettings:
    args = build_parser().parse_args(["run", "--cluster-id", "east", "--insecure", *argv])
    result = settings_from(resolve(args, environ={}))
    assert isinstance(result, AgentSettings)
    return result


def test_kubeconfig_selects_the_api_source(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    chosen = settings(["--kubeconfig", str(kubeconfig)])
    assert chosen.kubeconfig == kubeconfig
    assert chosen.manifests is None
    source = make_source(chosen, lambda _: None, lambda _: None)
    assert isinstance(source, KubernetesSource)
    assert source.access.kubeconfig == kubeconfig


def test_manifests_select_the_directory_source(tmp_path: Path) -> None:
    chosen = settings(["--manifests", str(tmp_path)])
    assert isinstance(make_source(chosen, lambda _: None, lambda _: None), ManifestSource)


def test_in_a_pod_neither_flag_means_in_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    chosen = settings([])
    assert (chosen.manifests, chosen.kubeconfig) == (None, None)
    source = make_source(chosen, lambda _: None, lambda _: None)
    assert isinstance(source, KubernetesSource)
    assert source.access.kubeconfig is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "a source is required: --manifests DIR or --kubeconfig PATH"),
        (["--kubeconfig", "/nonexistent/kubeconfig"], "--kubeconfig: /nonexistent/kubeconfig"),
        (["--kubeconfig", "KC", "--manifests", "."], "two sources; give one of them"),
    ],
)
def test_bad_source_settings_are_usage_errors(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    (tmp_path / "KC").write_text("")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=message.replace("-", r"\-")):
        settings(argv)
