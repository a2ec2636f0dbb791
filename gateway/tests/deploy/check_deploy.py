"""deploy/ checked with real tools (run by gateway/tests/deploy.rs with the tools venv):
docker-compose (PyPI) parses the compose file; every Kubernetes manifest round-trips through
the official client's API models (a misspelt or misplaced field is dropped by the model and
fails the comparison); checkov (every framework, all of deploy/) finds no failed check in the Dockerfile, the manifests or the
compose file (skips carry their reason in a comment next to them); the ConfigMap's bootstrap
file is the image's. Exits non-zero with the reason on any failure."""

import json
import os
import subprocess
import sys

import yaml
from kubernetes import client

ROOT = os.environ["WHARF_REPO"]
DEPLOY = os.path.join(ROOT, "deploy")
BIN = os.path.dirname(sys.executable)
failures = []


def fail(what):
    print(f"FAIL: {what}", flush=True)
    failures.append(what)


def strip_empty(v):
    if isinstance(v, dict):
        return {k: strip_empty(x) for k, x in v.items() if x not in (None, {}, [])}
    if isinstance(v, list):
        return [strip_empty(x) for x in v]
    return v


# 1. docker-compose parses and resolves the compose file.
compose = os.path.join(DEPLOY, "docker", "compose.yaml")
DOCKER_COMPOSE = os.environ.get("WHARF_DOCKER_COMPOSE", os.path.join(BIN, "docker-compose"))
# The compose file takes its secrets from the environment (no literal secret in it).
compose_env = dict(os.environ, WHARF_DB_PASSWORD="x", WHARF_OPERATOR_TOKEN="x",
                   WHARF_TLS_KEY_ENCRYPTION_KEY="x")
r = subprocess.run([DOCKER_COMPOSE, "-f", compose, "config", "-q"],
                   capture_output=True, text=True, env=compose_env)
if r.returncode != 0:
    fail(f"docker-compose config: {r.stderr.strip()}")
else:
    print("docker-compose config: ok")

# 2. Kubernetes manifests against the API types.
MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
}
api = client.ApiClient()
kube = os.path.join(DEPLOY, "kubernetes")
kinds = set()
for name in sorted(os.listdir(kube)):
    if not name.endswith(".yaml") or name == "kustomization.yaml":
        continue
    for doc in yaml.safe_load_all(open(os.path.join(kube, name))):
        key = (doc.get("apiVersion"), doc.get("kind"))
        kinds.add(key[1])
        if key == ("monitoring.coreos.com/v1", "ServiceMonitor"):
            eps = doc.get("spec", {}).get("endpoints", [])
            if not eps or not all(e.get("port") for e in eps):
                fail(f"{name}: a ServiceMonitor needs endpoints with a port")
            continue
        model = MODELS.get(key)
        if model is None:
            fail(f"{name}: no API model for {key}")
            continue

        obj = api.deserialize(json.dumps(doc), model, "application/json")
        back = strip_empty(api.sanitize_for_serialization(obj))
        if back != strip_empty(doc):
            fail(f"{name}: fields the {model} type does not have (or of the wrong type):\n"
                 f"  written: {json.dumps(strip_empty(doc), sort_keys=True)[:2000]}\n"
                 f"  model:   {json.dumps(back, sort_keys=True)[:2000]}")
        else:
            print(f"{name}: {model} ok")
kust = yaml.safe_load(open(os.path.join(kube, "kustomization.yaml")))
for res in kust["resources"]:
    if not os.path.exists(os.path.join(kube, res)):
        fail(f"kustomization names {res}, which does not exist")
for needed in ["Namespace", "Deployment", "Service", "ConfigMap", "Secret",
               "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor",
               "NetworkPolicy"]:
    if needed not in kinds:
        fail(f"no {needed} manifest")

# 3. The ConfigMap carries exactly the image's bootstrap file.
cm = yaml.safe_load(open(os.path.join(kube, "configmap.yaml")))
image_toml = open(os.path.join(DEPLOY, "docker", "wharf.toml")).read()
if cm["data"]["wharf.toml"] != image_toml:
    fail("configmap.yaml's wharf.toml differs from deploy/docker/wharf.toml")

# 4. checkov: no failed check, every framework over all of deploy/ (secrets included: nothing
# there may look like a credential). It cannot reach its vendor's guideline service here; that
# only drops links from the report.
r = subprocess.run([os.path.join(BIN, "checkov"), "-d", DEPLOY, "--compact", "--quiet",
                    "--output", "json"], capture_output=True, text=True)
try:
    reports = json.loads(r.stdout or "[]")
except json.JSONDecodeError:
    reports = []
    fail(f"checkov: unreadable output: {r.stdout[:500]} {r.stderr[:500]}")
if isinstance(reports, dict):
    reports = [reports]
for rep in reports:
    for c in rep.get("results", {}).get("failed_checks", []):
        fail(f"checkov {rep.get('check_type')}: {c['check_id']} {c['check_name']} ({c.get('file_path')})")
    print(f"checkov {rep.get('check_type')}: {rep.get('summary', {})}")
frameworks = {rep.get("check_type") for rep in reports}
for needed in ("dockerfile", "kubernetes"):
    if needed not in frameworks:
        fail(f"checkov ran no {needed} checks: {sorted(frameworks)}")

if failures:
    print(f"{len(failures)} problem(s)", file=sys.stderr)
    sys.exit(1)
print("deploy: all checks passed")
