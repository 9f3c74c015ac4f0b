"""examples/deploy/ checked against the real collector: the Kubernetes
manifest parses and has what a sidecar needs, the systemd unit is hardened,
and both start the collector with exactly the flags, variables and config
they pass it (rewritten only to use temp dirs and loopback :0 ports)."""

import http.client
import os
import pathlib
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import threading
import urllib.request

import pytest
import yaml

import throwaway_pki

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "examples" / "deploy"
BIN = pathlib.Path(os.environ.get("AUDIT_COLLECTOR_BIN", ROOT / "target" / "debug" / "audit-collector"))
HOST_DIRS = ("/etc/audit-collector", "/var/lib/audit-collector")


def collector_bin():
    if not BIN.exists():
        subprocess.run(["cargo", "build", "--bin", "audit-collector"], cwd=ROOT, check=True)
    return BIN


def serve_help():
    """The flags and environment variables `serve` accepts, from its --help."""
    out = subprocess.run([str(collector_bin()), "serve", "--help"], capture_output=True, text=True, check=True)
    flags = set(re.findall(r"(?:^|\s)(--[a-z][a-z0-9-]*)", out.stdout))
    envs = set(re.findall(r"\[env: ([A-Z0-9_]+)", out.stdout))
    assert "--data-dir" in flags and "AUDIT_COLLECTOR_DATA_DIR" in envs, out.stdout
    return flags, envs


def localize(value, tmp):
    """Host paths into the temp dir, listen addresses onto loopback :0."""
    for d in HOST_DIRS:
        value = value.replace(d, str(tmp / d.strip("/")))
    return re.sub(r"\b\d+\.\d+\.\d+\.\d+:\d+\b", "127.0.0.1:0", value)


def run_collector(argv, env, tmp, check=None):
    """Starts the collector as given, waits for its listening line, checks
    /readyz (and `check(listening fields)`), then SIGTERM and a clean exit."""
    for d in HOST_DIRS:
        (tmp / d.strip("/")).mkdir(parents=True, exist_ok=True)
    argv = [localize(a, tmp) for a in argv] + ["--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0"]
    env = {k: localize(v, tmp) for k, v in env.items()}
    proc = subprocess.Popen(
        [str(collector_bin())] + argv,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PATH": os.environ.get("PATH", ""), **env},
    )
    line = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()))
    reader.start()
    reader.join(60)
    try:
        assert line and line[0].startswith("listening"), f"collector did not start: {line} {proc.stderr.read() if proc.poll() is not None else ''}"
        fields = dict(kv.split("=", 1) for kv in line[0].split()[1:])
        probe = fields["admin"] if fields.get("admin", "off") != "off" else fields["otlp_http"]
        with urllib.request.urlopen(f"http://{probe}/readyz", timeout=10) as resp:
            assert resp.status == 200
        if check:
            check(fields)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, proc.stderr.read()


# --- Kubernetes -------------------------------------------------------------

@pytest.fixture(scope="module")
def k8s():
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes-sidecar.yaml").read_text()) if d]
    for d in docs:
        assert d.get("apiVersion") and d.get("kind"), d
        assert d.get("metadata", {}).get("name"), d
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def deployment(k8s):
    [dep] = [d for (kind, _), d in k8s.items() if kind == "Deployment"]
    return dep


def collector_container(pod):
    [c] = [c for c in pod["containers"] if "audit-collector" in c["image"]]
    return c


def test_k8s_objects_have_their_required_fields(k8s):
    dep = deployment(k8s)
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items(), "selector must match the pod"
    assert len(pod["containers"]) >= 2, "app plus sidecar"
    volumes = {v["name"]: v for v in pod["volumes"]}
    for c in pod["containers"]:
        assert c["name"] and c["image"]
        for m in c.get("volumeMounts", []):
            assert m["name"] in volumes and m["mountPath"].startswith("/"), m
    for v in volumes.values():
        if "configMap" in v:
            assert ("ConfigMap", v["configMap"]["name"]) in k8s
        if "secret" in v:
            secret = k8s[("Secret", v["secret"]["secretName"])]
            for item in v["secret"].get("items", []):
                assert item["key"] in secret["stringData"]
        if "persistentVolumeClaim" in v:
            assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in k8s
    for c in pod["containers"]:
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in k8s[("Secret", ref["name"])]["stringData"], ref


def test_k8s_sidecar_has_probes_limits_and_a_locked_down_container(k8s):
    pod = deployment(k8s)["spec"]["template"]["spec"]
    c = collector_container(pod)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert get["port"] in ports or get["port"] in ports.values(), probe
        paths[probe] = get["path"]
    assert paths["livenessProbe"] == "/healthz"
    assert paths["readinessProbe"] == "/readyz"
    for kind in ("requests", "limits"):
        assert c["resources"][kind]["cpu"] and c["resources"][kind]["memory"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert "ALL" in sc["capabilities"]["drop"]
    assert sc.get("runAsNonRoot", pod["securityContext"].get("runAsNonRoot")) is True
    assert pod["securityContext"].get("runAsUser", 0) != 0
    data_mounts = [m for m in c["volumeMounts"] if m["mountPath"] == "/var/lib/audit-collector"]
    assert data_mounts and not data_mounts[0].get("readOnly"), "the data dir must be writable"
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod["containers"]:
        for m in container.get("volumeMounts", []):
            v = volumes[m["name"]]
            if "secret" in v or "configMap" in v:
                assert m.get("readOnly") is True, f"{container['name']}: {m['name']} must be read-only"


def https_export(addr, pki_dir, token, client_cert=True):
    """One empty OTLP/HTTP export to the collector as the app makes it: to
    `localhost` over TLS, trusting the CA, with its client certificate and
    token. The HTTP status."""
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    if client_cert:
        ctx.load_cert_chain(pki_dir / "client.crt", pki_dir / "client.key")
    conn = http.client.HTTPSConnection("localhost", int(addr.rsplit(":", 1)[1]), context=ctx, timeout=10)
    headers = {"content-type": "application/x-protobuf"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    try:
        conn.request("POST", "/v1/logs", body=b"", headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def test_k8s_sidecar_starts_the_collector_with_its_args_env_and_config(k8s, tmp_path):
    flags, envs = serve_help()
    pod = deployment(k8s)["spec"]["template"]["spec"]
    c = collector_container(pod)
    args = c["args"]
    assert args[0] == "serve"
    for a in args[1:]:
        assert a.split("=")[0] in flags, f"{a}: not a serve flag"
    env = {}
    for e in c["env"]:
        assert e["name"] in envs or e["name"] == "RUST_LOG", f"{e['name']}: not a variable serve reads"
        env[e["name"]] = e["value"]
    # Lay out the mounted ConfigMap and Secret files where the pod would see
    # them; the certificates and CRL the manifest leaves to the operator
    # (placeholders) come from a throwaway CA.
    pki = throwaway_pki.issue()
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    for name, text in pki.items():
        (pki_dir / name).write_text(text)
    stand_ins = {"tls.crt": pki["tls.crt"], "tls.key": pki["tls.key"], "ca.crt": pki["ca.crt"], "clients-ca.crl": pki["crl"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for m in c["volumeMounts"]:
        v = volumes[m["name"]]
        if "configMap" in v:
            files = k8s[("ConfigMap", v["configMap"]["name"])]["data"]
        elif "secret" in v:
            data = k8s[("Secret", v["secret"]["secretName"])]["stringData"]
            files = {i["path"]: data[i["key"]] for i in v["secret"]["items"]}
        else:
            continue
        target = pathlib.Path(localize(m["mountPath"], tmp_path))
        target.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            if "REPLACE-ME" in text:
                text = stand_ins[name]
            (target / name).write_text(localize(text, tmp_path))
    [app] = [a for a in pod["containers"] if a is not c]
    [ref] = [e["valueFrom"]["secretKeyRef"] for e in app["env"] if e["name"] == "AUDIT_TOKEN"]
    token = k8s[("Secret", ref["name"])]["stringData"][ref["key"]]

    def app_exports(fields):
        addr = fields["otlp_http"]
        assert https_export(addr, pki_dir, token) == 200, "the app's certificate and token"
        assert https_export(addr, pki_dir, "not-the-apps-token-0123456789") == 401
        with pytest.raises(OSError):
            https_export(addr, pki_dir, token, client_cert=False)

    run_collector(args, env, tmp_path, check=app_exports)


# --- systemd ----------------------------------------------------------------

def unit():
    """The unit's sections as {section: [(key, value)]} (keys may repeat)."""
    sections, current = {}, None
    for line in (DEPLOY / "audit-collector.service").read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, _, value = line.partition("=")
        assert current is not None and key and _, line
        current.append((key, value))
    return sections


def test_systemd_unit_is_hardened():
    s = unit()
    assert {"Unit", "Service", "Install"} <= s.keys()
    svc = dict(s["Service"])
    assert svc.get("DynamicUser") == "yes" or svc.get("User") not in (None, "root")
    assert svc["NoNewPrivileges"] == "yes"
    assert svc["ProtectSystem"] == "strict"
    assert "/var/lib/audit-collector" in svc["ReadWritePaths"].split()
    assert svc["Restart"] == "on-failure"
    assert svc["KillSignal"] == "SIGTERM"
    assert int(svc["TimeoutStopSec"]) > 10, "longer than shutdown_timeout_secs, to seal"
    assert dict(s["Install"])["WantedBy"]


def test_systemd_unit_starts_the_collector_with_its_command_and_environment(tmp_path):
    flags, envs = serve_help()
    svc = unit()["Service"]
    [exec_start] = [v for k, v in svc if k == "ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0].endswith("/audit-collector") and argv[1] == "serve"
    for a in argv[2:]:
        if a.startswith("--"):
            assert a.split("=")[0] in flags, f"{a}: not a serve flag"
    env = {}
    for k, v in svc:
        if k == "Environment":
            name, _, value = v.partition("=")
            assert name in envs or name == "RUST_LOG", f"{name}: not a variable serve reads"
            env[name] = value
    # The install steps copy examples/deploy/collector.toml to /etc/audit-collector/.
    etc = tmp_path / "etc" / "audit-collector"
    etc.mkdir(parents=True)
    shutil.copy(DEPLOY / "collector.toml", etc / "collector.toml")
    run_collector(argv[1:], env, tmp_path)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    # verify checks that ExecStart's binary exists: point it at the built one.
    text = (DEPLOY / "audit-collector.service").read_text()
    text = text.replace("/usr/local/bin/audit-collector", str(collector_bin().resolve()))
    path = tmp_path / "audit-collector.service"
    path.write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    # It exits 0 on values it ignores (an unknown signal name, a misspelt
    # key), printing a warning that names the file: none is allowed.
    assert out.returncode == 0 and path.name not in out.stdout + out.stderr, out.stdout + out.stderr
