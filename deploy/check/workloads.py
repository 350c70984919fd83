"""The per-workload rules of manifests.py: how every hooklake pod is locked down, and
what the ingest Deployment, the sink Deployment and the sink CronJob each need from the
objects around them (Service, Ingress, HPA, PDB, ServiceMonitor)."""

from __future__ import annotations

from common import Problems, byte_size, duration_seconds, labels_match, nginx_size

# A sink commit can take a couple of minutes on a big backlog; it must not be killed.
SINK_MIN_GRACE = 120
# ingress-nginx keeps idle upstream connections this long (its ConfigMap's
# upstream-keepalive-timeout default). Ingest must not close an idle connection sooner: nginx
# could send a POST on it as ingest closes it, and does not retry a POST (502).
NGINX_UPSTREAM_KEEPALIVE = 60
NGINX = "nginx.ingress.kubernetes.io/"


def port_number(c: dict, port) -> int | None:
    """A probe/service target port (number or container port name) as a number."""
    if isinstance(port, int):
        return port
    return next((p["containerPort"] for p in c.get("ports") or [] if p.get("name") == port), None)


def listen_port(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def pod_labels(workload: dict) -> dict:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels") or {}
    return workload["spec"]["template"]["metadata"].get("labels") or {}


def check_pod(r, workload, spec, c, where, uid, expect, p: Problems) -> None:
    psc, csc = spec.get("securityContext") or {}, c.get("securityContext") or {}
    p.check(psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True, where, "runAsNonRoot must be true")
    run_as = csc.get("runAsUser", psc.get("runAsUser"))
    p.check(run_as is not None and run_as != 0 and run_as == uid, where,
            f"runAsUser {run_as} must be the image's numeric USER {uid} (deploy/Dockerfile)")
    seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    p.check(seccomp == "RuntimeDefault", where, f"seccompProfile must be RuntimeDefault, is {seccomp}")
    p.check(csc.get("allowPrivilegeEscalation") is False, where, "allowPrivilegeEscalation must be false")
    p.check(csc.get("readOnlyRootFilesystem") is True, where, "readOnlyRootFilesystem must be true")
    p.check(not csc.get("privileged"), where, "must not be privileged")
    p.check("ALL" in ((csc.get("capabilities") or {}).get("drop") or []), where, "capabilities.drop must include ALL")
    p.check(spec.get("automountServiceAccountToken") is False, where,
            "automountServiceAccountToken must be false (hooklake never calls the Kubernetes API)")
    res = c.get("resources") or {}
    for kind, key in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
        p.check(key in (res.get(kind) or {}), where, f"resources.{kind}.{key} must be set")
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for m in c.get("volumeMounts") or []:
        p.check(m["name"] in volumes, where, f"volumeMount {m['name']} has no volume")
    tmp = next((m for m in c.get("volumeMounts") or [] if m["mountPath"] == "/tmp"), None)
    empty_dir = (volumes.get(tmp["name"], {}) if tmp else {}).get("emptyDir")
    p.check(empty_dir is not None and "sizeLimit" in empty_dir, where,
            "/tmp must be an emptyDir with a sizeLimit (the root filesystem is read-only)")
    image = c.get("image", "")
    if expect.get("pinned_image"):
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        p.check("@sha256:" in image or (tag and tag not in ("latest", "dev", "main")), where,
                f"image {image!r} must be pinned to a release tag or digest")


def check_workload_roles(r, expect, p: Problems) -> dict:
    """Which workload is which (by the hooklake subcommand it runs), that each exists the
    expected number of times, and the role check to run on its container."""
    roles, counts = {}, {"ingest": 0, "Deployment": 0, "CronJob": 0}
    for workload, template in r.pod_templates():
        args = (template["spec"]["containers"][0].get("args") or [""])
        kind = workload["kind"]
        if args[0] == "ingest":
            p.check(kind == "Deployment", f"{r.name} {kind}", "ingest must run as a Deployment")
            roles[id(workload)] = check_ingest
            counts["ingest"] += 1
        elif args[0] == "sink":
            once = "--once" in args
            p.check(once == (kind == "CronJob"), f"{r.name} {kind}",
                    "the sink runs with --once exactly when it is a CronJob")
            roles[id(workload)] = check_sink_cronjob if kind == "CronJob" else check_sink_service
            counts[kind] += 1
    p.check(counts["ingest"] == 1, r.name, f"expected one ingest Deployment, found {counts['ingest']}")
    want = expect.get("sink", "Deployment")
    other = "CronJob" if want == "Deployment" else "Deployment"
    p.check(counts[want] == 1 and counts[other] == 0, r.name,
            f"expected the sink as one {want} (and no {other}), found {counts}")
    p.check(len(r.all("PrometheusRule")) >= 1, r.name, "no PrometheusRule")
    return roles


def check_probes(c, admin_port: int, where: str, p: Problems) -> None:
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = (c.get(probe) or {}).get("httpGet") or {}
        p.check(get.get("path") == path and port_number(c, get.get("port")) == admin_port, where,
                f"{probe} must GET {path} on the admin port {admin_port}, has {get}")


def services_for(r, workload, c, container_port: int) -> list[tuple[dict, dict]]:
    """(Service, service port) pairs that route to container_port of the workload's pods."""
    out = []
    for s in r.all("Service"):
        if not labels_match({"matchLabels": s["spec"].get("selector") or {}}, pod_labels(workload)):
            continue
        for sp in s["spec"].get("ports") or []:
            if port_number(c, sp.get("targetPort", sp["port"])) == container_port:
                out.append((s, sp))
    return out


def check_scraped(r, workload, c, admin_port, where, p: Problems) -> None:
    for s, sp in services_for(r, workload, c, admin_port):
        for sm in r.all("ServiceMonitor"):
            if labels_match(sm["spec"]["selector"], s["metadata"].get("labels") or {}) and any(
                    e.get("port") == sp.get("name") for e in sm["spec"]["endpoints"]):
                return
    p.fail(where, f"no ServiceMonitor scrapes the admin port {admin_port} through a Service")


def check_ingest(r, workload, spec, c, config, where, expect, p: Problems) -> None:
    ingest = config.get("ingest", {})
    http_port = listen_port(ingest.get("listen", "0.0.0.0:8080"))
    admin_port = listen_port(ingest.get("admin_listen", "0.0.0.0:9090"))
    deadline = duration_seconds(ingest.get("response_deadline", "10s"))
    lo, hi = expect.get("ingest_replicas", (2, None))
    replicas = workload["spec"].get("replicas", 1)
    p.check(replicas >= lo and (hi is None or replicas <= hi), where, f"replicas {replicas} outside [{lo}, {hi or '∞'}]")
    p.check(port_number(c, "http") == http_port, where, f"container port `http` must be ingest.listen's {http_port}")
    check_probes(c, admin_port, where, p)
    pre = ((c.get("lifecycle") or {}).get("preStop") or {})
    command = (pre.get("exec") or {}).get("command") or []
    sleep = (pre.get("sleep") or {}).get("seconds") or (int(command[-1]) if command and command[-1].isdigit() else 0)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    p.check(sleep > 0, where, "a preStop sleep must let the ingress stop routing before SIGTERM")
    p.check(grace > sleep + deadline, where,
            f"terminationGracePeriodSeconds {grace} must exceed preStop {sleep}s + response_deadline {deadline:g}s")
    check_scraped(r, workload, c, admin_port, where, p)
    idle = duration_seconds(ingest.get("header_read_timeout", "10s"))
    p.check(idle > NGINX_UPSTREAM_KEEPALIVE, where,
            f"ingest.header_read_timeout {idle:g}s (also ingest's keep-alive idle limit) must exceed"
            f" ingress-nginx's upstream keep-alive of {NGINX_UPSTREAM_KEEPALIVE}s")
    at_cap = duration_seconds(ingest.get("at_cap_timeout", "2s"))
    p.check(at_cap > NGINX_UPSTREAM_KEEPALIVE, where,
            f"ingest.at_cap_timeout {at_cap:g}s (ingest's keep-alive idle limit at max_connections) must exceed"
            f" ingress-nginx's upstream keep-alive of {NGINX_UPSTREAM_KEEPALIVE}s")
    check_ingress(r, workload, c, http_port, byte_size(ingest.get("max_body_bytes", 1 << 20)), deadline, where, p)
    hpas = [h for h in r.all("HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == workload["metadata"]["name"]
            and h["spec"]["scaleTargetRef"]["kind"] == "Deployment"]
    if p.check(len(hpas) == 1, where, "needs exactly one HorizontalPodAutoscaler"):
        h = hpas[0]["spec"]
        p.check(any(m.get("type") == "Resource" and m["resource"]["name"] == "cpu" for m in h.get("metrics") or []),
                where, "the HPA must scale on CPU")
        p.check(lo <= h.get("minReplicas", 1) <= replicas <= h["maxReplicas"], where,
                f"HPA min {h.get('minReplicas', 1)} / replicas {replicas} / max {h['maxReplicas']} conflict"
                f" (expected min >= {lo})")
    p.check(any(labels_match(b["spec"]["selector"], pod_labels(workload)) for b in r.all("PodDisruptionBudget")),
            where, "no PodDisruptionBudget selects the ingest pods")


def check_ingress(r, workload, c, http_port, max_body, deadline, where, p: Problems) -> None:
    found = False
    for ing in r.all("Ingress"):
        for rule in ing["spec"].get("rules") or []:
            for path in (rule.get("http") or {}).get("paths") or []:
                if path.get("path") != "/webhook":
                    continue
                found = True
                w = f"{r.name} Ingress/{ing['metadata']['name']}"
                p.check(path.get("pathType") == "Prefix", w, "path /webhook must be pathType Prefix")
                backend = path["backend"]["service"]
                svc_port = backend["port"].get("name") or backend["port"].get("number")
                routes = [(s, sp) for s, sp in services_for(r, workload, c, http_port)
                          if s["metadata"]["name"] == backend["name"] and svc_port in (sp.get("name"), sp["port"])]
                p.check(bool(routes), w, f"backend {backend['name']}:{svc_port} does not reach the ingest http port {http_port}")
                check_nginx(ing, max_body, deadline, w, p)
    p.check(found, where, "no Ingress routes /webhook to ingest")


def check_nginx(ing, max_body, deadline, w, p: Problems) -> None:
    ann = ing["metadata"].get("annotations") or {}
    body = ann.get(NGINX + "proxy-body-size")
    if p.check(body is not None, w, f"{NGINX}proxy-body-size must be set (nginx defaults to 1m)"):
        try:
            p.check(nginx_size(body) == max_body, w,
                    f"proxy-body-size {body} = {nginx_size(body)} bytes but ingest.max_body_bytes is {max_body}")
        except ValueError as e:
            p.fail(w, str(e))
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        value = ann.get(NGINX + key, "60")
        p.check(value.isdigit() and int(value) > deadline, w,
                f"{key} {value}s must exceed ingest.response_deadline {deadline:g}s")


def check_sink_service(r, workload, spec, c, config, where, expect, p: Problems) -> None:
    admin_port = listen_port(config.get("sink", {}).get("admin_listen", "0.0.0.0:9091"))
    p.check(workload["spec"].get("replicas", 1) == 1, where, "the sink runs one replica by default")
    p.check(spec.get("terminationGracePeriodSeconds", 30) >= SINK_MIN_GRACE, where,
            f"terminationGracePeriodSeconds must be >= {SINK_MIN_GRACE} so that a commit can finish")
    check_probes(c, admin_port, where, p)
    check_scraped(r, workload, c, admin_port, where, p)


def check_sink_cronjob(r, workload, spec, c, config, where, expect, p: Problems) -> None:
    p.check(workload["spec"].get("concurrencyPolicy") == "Forbid", where, "concurrencyPolicy must be Forbid")
    p.check(spec.get("restartPolicy") in ("Never", "OnFailure"), where, "restartPolicy must be Never or OnFailure")
    p.check(spec.get("terminationGracePeriodSeconds", 30) >= SINK_MIN_GRACE, where,
            f"terminationGracePeriodSeconds must be >= {SINK_MIN_GRACE} so that a commit can finish")
