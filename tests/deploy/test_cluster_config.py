"""The cluster launcher config validates against the schema that ships with Ray, and says what we promise."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def load(name):
    return yaml.safe_load((ROOT / name).read_text())


def test_cluster_yaml_validates_against_rays_schema():
    import json

    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load("cluster.yaml")
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)  # the file as written
    validate_config(prepare_config(config))  # and as `ray up` sees it, provider defaults filled in


def test_cluster_yaml_head_runs_no_work_and_gpu_workers_autoscale():
    config = load("cluster.yaml")
    nodes = config["available_node_types"]
    head = nodes[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    assert "--num-cpus=0" in " ".join(config["head_start_ray_commands"])
    assert config["docker"]["image"] == "rayproject/ray:2.60.0-py311-gpu"
    workers = {k: v for k, v in nodes.items() if k != config["head_node_type"]}
    assert {v["node_config"]["InstanceType"] for v in workers.values()} == {"g5.xlarge", "g5.12xlarge"}
    for spec in [head, *workers.values()]:
        assert spec["node_config"]["ImageId"].startswith("ami-")
    for spec in workers.values():
        assert spec["min_workers"] == 0 and spec["max_workers"] > 0
        assert spec["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
        assert ":instance-profile/" in spec["node_config"]["IamInstanceProfile"]["Arn"]
    assert any("pip install" in c and "prfeval" in c for c in config["setup_commands"])


def test_rayjob_manifest_runs_nightly_evaluate_and_regress_on_gpus():
    job = load("deploy/rayjob-nightly.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    entry = job["spec"]["entrypoint"]
    assert "prfeval evaluate" in entry and "prfeval regress" in entry
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (group,) = cluster["workerGroupSpecs"]
    (container,) = group["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
