"""The role's filters: lxcwatch's parts added to an operator's prometheus.yml and alertmanager.yml, keeping
everything else; bcrypt hashes for the web config that are the same on every run."""

import base64
import copy
import hashlib

import bcrypt
from ansible.errors import AnsibleFilterError

_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def lxcwatch_bcrypt(password, seed, cost=10):
    """bcrypt hash of `password` with a salt derived from `seed` (host and user), as the prometheus.prometheus
    collection does for node_exporter: a second run writes the same file and restarts nothing."""
    secret = str(password).encode()
    if len(secret) > 72:
        raise AnsibleFilterError(f"the password for {seed} is {len(secret)} bytes long; bcrypt takes at most 72")
    salt = base64.b64encode(hashlib.sha256(str(seed).encode()).digest()[:16]).decode().rstrip("=")
    return bcrypt.hashpw(secret, f"$2b${cost:02d}${salt.translate(str.maketrans(_BASE64, _BCRYPT64))}".encode()).decode()


def lxcwatch_prometheus_config(current, job, rule_file, base):
    """`current` (prometheus.yml as data; None: no file, then `base`) with the job named like `job` replaced or
    appended and `rule_file` in rule_files; every other key, job and rule file as it was, in its order."""
    config = copy.deepcopy(current if current is not None else base)
    jobs = config.get("scrape_configs") or []
    names = [j.get("job_name") for j in jobs]
    if job["job_name"] in names:
        jobs[names.index(job["job_name"])] = job
    else:
        jobs.append(job)
    config["scrape_configs"] = jobs
    rules = config.get("rule_files") or []
    config["rule_files"] = rules if rule_file in rules else rules + [rule_file]
    return config


def _renamed(route, names):
    """A route tree with its receivers renamed by `names`."""
    route = dict(route)
    if "receiver" in route:
        route["receiver"] = names[route["receiver"]]
    if "routes" in route:
        route["routes"] = [_renamed(r, names) for r in route["routes"]]
    return route


def lxcwatch_alertmanager_config(current, example, prefix, urls):
    """`current` (alertmanager.yml as data; None: no file) with lxcwatch's `example` configuration joined to it:
    its receivers renamed PREFIX-NAME (webhook URLs from `urls`, by receiver name), its route tree as the first
    child of the operator's root route, restricted to lxcwatch's alerts, and its inhibit rules. Parts added by an
    earlier run are replaced; nothing else changes."""
    names = {r["name"]: f"{prefix}-{r['name']}" for r in example["receivers"]}
    receivers = []
    for receiver in example["receivers"]:
        receiver = copy.deepcopy(receiver)
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = urls[receiver["name"]]
        receiver["name"] = names[receiver["name"]]
        receivers.append(receiver)
    matcher = 'alertname=~"Lxcwatch.+"'
    route = _renamed(example["route"], names)
    route = {"matchers": [matcher], **{k: v for k, v in route.items() if k != "matchers"}}

    config = copy.deepcopy(current) if current is not None else {"route": {"receiver": names[example["route"]["receiver"]]}}
    ours = set(names.values())
    config["receivers"] = [r for r in config.get("receivers") or [] if r.get("name") not in ours] + receivers
    root = config.setdefault("route", {})
    root["routes"] = [route] + [r for r in root.get("routes") or [] if r.get("matchers") != [matcher]]
    inhibits = [r for r in config.get("inhibit_rules") or [] if r not in example.get("inhibit_rules", [])]
    config["inhibit_rules"] = inhibits + example.get("inhibit_rules", [])
    return config


class FilterModule:
    def filters(self):
        return {
            "lxcwatch_prometheus_config": lxcwatch_prometheus_config,
            "lxcwatch_alertmanager_config": lxcwatch_alertmanager_config,
            "lxcwatch_bcrypt": lxcwatch_bcrypt,
        }
