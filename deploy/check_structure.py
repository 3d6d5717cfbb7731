"""Structural checks of deploy/ that no schema covers; run by deploy/check.sh.

    python3 check_structure.py dockerfile DOCKERFILE WORKSPACE_MEMBERS_JSON
    python3 check_structure.py compose COMPOSE_FILE
    python3 check_structure.py grafana DEPLOY_DIR
    python3 check_structure.py kubernetes RENDERED_YAML [--fsgroup]
    python3 check_structure.py rota-cmds COMPOSE_FILE      (JSON: each rota service's command)
    python3 check_structure.py k8s-script RENDERED_YAML    (the container's shell script)

Each check prints one line per problem and exits 1 if there was any; the
extractors print what check.sh runs next. Needs PyYAML.
"""

import json
import re
import sys
from pathlib import Path

import yaml

problems = []


def expect(cond, message):
    if not cond:
        problems.append(message)
    return cond


def finish():
    for p in problems:
        print(f"  - {p}")
    sys.exit(1 if problems else 0)


# --- Dockerfile -----------------------------------------------------------------


def dockerfile_instructions(path):
    """(INSTRUCTION, text) pairs, continuation lines joined, comments dropped."""
    out, current = [], ""
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def stages(instructions):
    result, stage = [], None
    for word, text in instructions:
        if word == "FROM":
            stage = {"from": text, "steps": []}
            result.append(stage)
        elif stage is not None:
            stage["steps"].append((word, text))
    return result


def check_dockerfile(path, members_json):
    members = json.loads(Path(members_json).read_text())
    st = stages(dockerfile_instructions(path))
    if not expect(len(st) == 2, f"expected 2 stages (builder, runtime), found {len(st)}"):
        return
    builder, runtime = st
    expect(builder["from"] == "rust:1-bookworm AS builder", f"builder is FROM {builder['from']!r}")
    expect(runtime["from"] == "debian:bookworm-slim", f"runtime is FROM {runtime['from']!r}")

    copied = set()
    for word, text in builder["steps"]:
        if word == "COPY" and "--from" not in text:
            parts = text.split()
            copied.update(parts[:-1])
    for manifest in ["Cargo.toml", "Cargo.lock"] + [f"{m}/Cargo.toml" for m in members]:
        expect(manifest in copied, f"builder does not COPY {manifest} (a workspace member)")
    for src in ["crates", "bench", "examples"]:
        expect(src in copied, f"builder does not COPY {src}")
    check_included_files(Path(path).resolve().parent.parent, copied)
    runs = [t for w, t in builder["steps"] if w == "RUN"]
    expect(any("cargo fetch --locked" in r for r in runs), "no `cargo fetch --locked` layer")
    expect(
        any("cargo build --release --locked -p rota" in r for r in runs),
        "no `cargo build --release --locked -p rota`",
    )
    fetch_at = next((i for i, r in enumerate(runs) if "cargo fetch" in r), None)
    build_at = next((i for i, r in enumerate(runs) if "cargo build" in r), None)
    expect(
        fetch_at is not None and build_at is not None and fetch_at < build_at,
        "dependencies are not fetched in a layer before the build",
    )

    steps = runtime["steps"]
    text_of = lambda word: [t for w, t in steps if w == word]  # noqa: E731
    runs = " ".join(text_of("RUN"))
    expect("ca-certificates" in runs, "runtime does not install ca-certificates")
    expect(
        any("/usr/local/bin/rota" in t and "--from=builder" in t for t in text_of("COPY")),
        "binary not copied to /usr/local/bin/rota",
    )
    users = text_of("USER")
    expect(
        len(users) == 1 and users[0].isdigit() and users[0] != "0",
        f"USER must be one numeric non-root uid, is {users}",
    )
    expect(re.search(r"chown \d+:0 /var/lib/rota", runs), "data dir is not chown UID:0")
    expect(re.search(r"chmod \S*g=u\S* /var/lib/rota", runs), "data dir is not chmod g=u")
    expect(text_of("VOLUME") in (['["/var/lib/rota"]'], ["/var/lib/rota"]), "VOLUME /var/lib/rota")
    expect(text_of("EXPOSE") == ["7700"], "EXPOSE 7700")
    expect(text_of("ENTRYPOINT") == ['["rota"]'], 'ENTRYPOINT ["rota"]')
    cmd = text_of("CMD")
    expect(
        cmd == ['["server", "--listen", "0.0.0.0:7700", "--data-dir", "/var/lib/rota"]'],
        f"CMD is {cmd}",
    )
    health = text_of("HEALTHCHECK")
    expect(len(health) == 1 and "/healthz" in health[0], "HEALTHCHECK on /healthz")


def check_included_files(root, copied):
    """Files that non-test code compiles in (include_str!, include_bytes!) must be
    in what the builder copies. Test code is a file under tests/, a module
    declared `#[cfg(test)] mod NAME;`, or a file's part after its first
    `#[cfg(test)]` (test modules close their files here)."""
    pattern = re.compile(r'include_(?:str|bytes)!\(\s*"([^"]+)"')
    sources = sorted(root.glob("crates/*/src/**/*.rs")) + sorted(root.glob("bench/*/src/**/*.rs"))
    test_files = set()
    for src in sources:
        for name in re.findall(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod (\w+);", src.read_text()):
            base = src.parent if src.name in ("lib.rs", "main.rs", "mod.rs") else src.with_suffix("")
            test_files.update({base / f"{name}.rs", base / name / "mod.rs"})
    for src in sources:
        rel = src.relative_to(root)
        if "tests" in rel.parts or src in test_files:
            continue
        text = src.read_text().split("#[cfg(test)]")[0]
        for included in pattern.findall(text):
            target = (src.parent / included).resolve().relative_to(root)
            expect(
                any(target.parts[: len(Path(c).parts)] == Path(c).parts for c in copied),
                f"{rel} compiles in {target}, which the builder does not COPY",
            )


def dockerfile_facts(path):
    """What check.sh replays: runtime CMD, HEALTHCHECK argv, data dir owner and
    mode, ENV HOME, the fetch layer (COPY sources and RUN script)."""
    st = stages(dockerfile_instructions(path))
    builder, runtime = st
    fetch_copies, fetch_run = [], None
    for word, text in builder["steps"]:
        if word == "COPY" and fetch_run is None:
            fetch_copies += text.split()[:-1]
        if word == "RUN" and "cargo fetch" in text:
            fetch_run = text
            break
    facts = {"fetch_copies": fetch_copies, "fetch_run": fetch_run}
    for word, text in runtime["steps"]:
        if word == "CMD":
            facts["cmd"] = json.loads(text)
        elif word == "HEALTHCHECK":
            facts["healthcheck"] = json.loads(text[text.index("CMD") + 3 :].strip())
        elif word == "RUN":
            m = re.search(r"chown (\S+) /var/lib/rota", text)
            if m:
                facts["owner"] = m.group(1)
            m = re.search(r"chmod (\S+) /var/lib/rota", text)
            if m:
                facts["mode"] = m.group(1)
        elif word == "ENV" and text.startswith("HOME="):
            facts["home"] = text.split("=", 1)[1]
    print(json.dumps(facts))


# --- compose ------------------------------------------------------------------


def load_compose(path):
    return yaml.safe_load(Path(path).read_text())


def rota_services(doc):
    return {n: s for n, s in doc["services"].items() if re.fullmatch(r"rota-\d+", n)}


def flags(command):
    out = {}
    for arg in command[1:]:
        key, _, value = arg.partition("=")
        out[key] = value
    return out


def check_compose(path):
    base = Path(path).parent
    doc = load_compose(path)
    services = doc.get("services", {})
    expected = {"rota-1", "rota-2", "rota-3", "influxdb", "prometheus", "grafana"}
    expect(set(services) == expected, f"services are {sorted(services)}, expected {sorted(expected)}")
    declared = set((doc.get("volumes") or {}).keys())
    peers_seen = set()
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith((".", "/")):
                expect((base / source).exists(), f"{name}: bind source {source} does not exist")
            else:
                expect(source in declared, f"{name}: volume {source} is not declared")
        for port in svc.get("ports", []):
            expect(str(port).startswith("127.0.0.1:"), f"{name}: port {port} is not on loopback")
    for name, svc in rota_services(doc).items():
        n = name.split("-")[1]
        build = svc.get("build", {})
        expect((base / build.get("context", "?")).is_dir(), f"{name}: build context missing")
        expect(
            (base / build.get("context", "?") / build.get("dockerfile", "?")).is_file(),
            f"{name}: dockerfile missing",
        )
        expect(svc.get("hostname") == name, f"{name}: hostname is {svc.get('hostname')}")
        cmd = svc.get("command", [])
        expect(cmd[:1] == ["server"], f"{name}: command does not start with server")
        f = flags(cmd)
        expect(f.get("--node-id") == n, f"{name}: --node-id is {f.get('--node-id')}, expected {n}")
        expect(f.get("--advertise") == f"http://{name}:7700", f"{name}: --advertise {f.get('--advertise')}")
        expect(f.get("--listen") == "0.0.0.0:7700", f"{name}: --listen {f.get('--listen')}")
        expect(f.get("--data-dir") == "/var/lib/rota", f"{name}: --data-dir {f.get('--data-dir')}")
        expect(
            any(v.endswith(":/var/lib/rota") and v.split(":")[0] == name for v in svc.get("volumes", [])),
            f"{name}: its named volume is not at /var/lib/rota",
        )
        expect("ROTA_CLUSTER_SECRET" in svc.get("environment", {}), f"{name}: no ROTA_CLUSTER_SECRET")
        peers_seen.add(f.get("--peers"))
    want = ",".join(f"{i}=http://rota-{i}:7700" for i in range(1, 4))
    expect(peers_seen == {want}, f"--peers differ or are wrong: {peers_seen}")
    expect(services.get("influxdb", {}).get("image") == "influxdb:1.8", "influxdb is not influxdb:1.8")
    expect(
        services.get("influxdb", {}).get("environment", {}).get("INFLUXDB_DB") == "ci",
        "influxdb does not create the ci database",
    )

    prom = yaml.safe_load((base / "prometheus/prometheus.yml").read_text())
    jobs = prom.get("scrape_configs", [])
    targets = sorted(t for j in jobs for sc in j.get("static_configs", []) for t in sc["targets"])
    expect(
        targets == sorted(f"{n}:7700" for n in rota_services(doc)),
        f"prometheus targets {targets} are not the rota services",
    )
    expect(all(j.get("metrics_path", "/metrics") == "/metrics" for j in jobs), "metrics_path")
    expect(all(j.get("honor_labels") is True for j in jobs), "honor_labels must be true (rota's job label)")


def rota_cmds(path):
    doc = load_compose(path)
    print(json.dumps({n: s["command"] for n, s in sorted(rota_services(doc).items())}))


# --- grafana ------------------------------------------------------------------


def check_grafana(deploy):
    deploy = Path(deploy)
    prov = deploy / "grafana/provisioning"
    ds = yaml.safe_load((prov / "datasources/datasources.yaml").read_text())
    sources = ds.get("datasources", [])
    uids = [s.get("uid") for s in sources]
    expect(len(set(uids)) == len(uids) and None not in uids, f"datasource uids {uids}")
    types = {s["type"]: s for s in sources}
    expect(sum(1 for s in sources if s.get("isDefault")) == 1, "exactly one default datasource")
    influx = types.get("influxdb", {})
    expect(influx.get("jsonData", {}).get("dbName") == "ci", "InfluxDB datasource database is not ci")
    expect(influx.get("url") == "http://influxdb:8086", "InfluxDB datasource url")
    expect(types.get("prometheus", {}).get("url") == "http://prometheus:9090", "Prometheus datasource url")

    compose = load_compose(deploy / "compose.yaml")
    mounts = {}
    for vol in compose["services"]["grafana"].get("volumes", []):
        parts = vol.split(":")
        mounts[parts[1]] = parts[0]
    expect(mounts.get("/etc/grafana/provisioning") == "./grafana/provisioning", "provisioning not mounted")
    dash = yaml.safe_load((prov / "dashboards/dashboards.yaml").read_text())
    paths = [p["options"]["path"] for p in dash.get("providers", [])]
    expect(len(paths) == 1, f"dashboard providers: {paths}")
    for board in sorted(deploy.glob("grafana/*.json")):
        target = f"{paths[0]}/{board.name}" if paths else None
        expect(mounts.get(target) == f"./grafana/{board.name}", f"{board.name} is not mounted at {target}")
        d = json.loads(board.read_text())
        for var in d.get("templating", {}).get("list", []):
            if var.get("type") == "datasource":
                expect(
                    var.get("query") in types,
                    f"{board.name}: variable ${{{var['name']}}} wants a {var.get('query')} datasource; none provisioned",
                )
        used = set()

        def walk(o):
            if isinstance(o, dict):
                if isinstance(o.get("datasource"), dict):
                    used.add(o["datasource"].get("uid"))
                for v in o.values():
                    walk(v)
            elif isinstance(o, list):
                for v in o:
                    walk(v)

        walk(d.get("panels", []))
        walk(d.get("templating", {}))
        for uid in used:
            expect(
                uid in ("${datasource}", None) or uid in uids,
                f"{board.name}: panel datasource uid {uid!r} is neither ${{datasource}} nor provisioned",
            )


# --- kubernetes ---------------------------------------------------------------


def k8s_docs(path):
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(Path(path).read_text()) if d}


def check_kubernetes(path, fsgroup):
    docs = k8s_docs(path)
    for kind, name in [
        ("Service", "rota-peers"),
        ("Service", "rota"),
        ("StatefulSet", "rota"),
        ("PodDisruptionBudget", "rota"),
    ]:
        expect((kind, name) in docs, f"missing {kind}/{name}")
    for doc in docs.values():
        expect("namespace" not in doc["metadata"], f"{doc['kind']}/{doc['metadata']['name']} sets a namespace")
    peers = docs.get(("Service", "rota-peers"), {}).get("spec", {})
    expect(peers.get("clusterIP") == "None", "rota-peers is not headless")
    expect(peers.get("publishNotReadyAddresses") is True, "rota-peers does not publish not-ready pods")
    pdb = docs.get(("PodDisruptionBudget", "rota"), {}).get("spec", {})
    expect(pdb.get("maxUnavailable") == 1, "PDB maxUnavailable is not 1")

    sts = docs.get(("StatefulSet", "rota"), {}).get("spec", {})
    expect(sts.get("replicas") == 3, "replicas is not 3")
    expect(sts.get("podManagementPolicy") == "Parallel", "podManagementPolicy is not Parallel")
    expect(sts.get("serviceName") == "rota-peers", "serviceName is not rota-peers")
    pod = sts.get("template", {}).get("spec", {})
    psc = pod.get("securityContext", {})
    expect(psc.get("runAsNonRoot") is True, "pod runAsNonRoot is not true")
    expect(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccompProfile")
    expect("runAsUser" not in psc, "pod sets runAsUser (OpenShift assigns the UID)")
    if fsgroup:
        expect(psc.get("fsGroup") == 10001, "with-fsgroup does not set fsGroup 10001")
    else:
        expect("fsGroup" not in psc, "base sets fsGroup (OpenShift's restricted SCC assigns it)")
    containers = pod.get("containers", [])
    expect(len(containers) == 1, "expected one container")
    c = containers[0] if containers else {}
    sc = c.get("securityContext", {})
    expect("runAsUser" not in sc, "container sets runAsUser")
    expect(sc.get("runAsNonRoot") is True, "container runAsNonRoot")
    expect(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
    expect(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities do not drop ALL")
    expect("add" not in sc.get("capabilities", {}), "capabilities add something")
    expect(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true")
    expect(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "container seccompProfile")
    expect(sc.get("privileged") in (None, False), "privileged")
    expect(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "readiness is not /readyz")
    expect(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "liveness is not /healthz")
    expect("requests" in c.get("resources", {}) and "limits" in c.get("resources", {}), "resources")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    claims = [t["metadata"]["name"] for t in sts.get("volumeClaimTemplates", [])]
    expect(mounts.get("/var/lib/rota") in claims, "data dir is not on the volumeClaimTemplate")
    empty = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    expect(mounts.get("/tmp") in empty, "/tmp is not an emptyDir")
    expect(not pod.get("hostNetwork") and not pod.get("hostPID"), "host namespaces")
    env = {e["name"] for e in c.get("env", [])}
    for name in ["POD_NAME", "POD_NAMESPACE", "CLUSTER_SIZE", "ROTA_CLUSTER_SECRET"]:
        expect(name in env, f"container env lacks {name}")


def k8s_script(path):
    docs = k8s_docs(path)
    c = docs[("StatefulSet", "rota")]["spec"]["template"]["spec"]["containers"][0]
    cluster_size = next(e["value"] for e in c["env"] if e["name"] == "CLUSTER_SIZE")
    print(json.dumps({"argv": c["command"] + c["args"], "cluster_size": cluster_size}))


def main(argv):
    what = argv[1]
    if what == "dockerfile":
        check_dockerfile(argv[2], argv[3])
    elif what == "dockerfile-facts":
        return dockerfile_facts(argv[2])
    elif what == "compose":
        check_compose(argv[2])
    elif what == "rota-cmds":
        return rota_cmds(argv[2])
    elif what == "grafana":
        check_grafana(argv[2])
    elif what == "kubernetes":
        check_kubernetes(argv[2], "--fsgroup" in argv)
    elif what == "k8s-script":
        return k8s_script(argv[2])
    else:
        sys.exit(f"unknown check {what!r}; see the docstring")
    finish()


if __name__ == "__main__":
    main(sys.argv)
