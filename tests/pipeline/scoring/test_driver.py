"""The driver's arithmetic and checks without Ray: the actor pool planned from node lists, the checkpoint checks."""

from __future__ import annotations

import pytest

from pipeline.scoring.driver import (
    UNTRAINED,
    Pool,
    ResourceError,
    ScoringConfig,
    ScoringInputError,
    checkpoint_id,
    plan_pool,
    preflight,
)


def nodes(*cpus: float, gpus: tuple[float, ...] = (), dead: int = 0) -> list[dict]:
    """A :func:`ray.nodes`-like list: alive nodes with these CPUs (and GPUs), plus ``dead`` dead ones."""
    out = []
    for i, c in enumerate(cpus):
        res = {"CPU": c, "memory": 1e9}
        if i < len(gpus) and gpus[i]:
            res["GPU"] = gpus[i]
        out.append({"Alive": True, "Resources": res})
    out += [{"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}} for _ in range(dead)]
    return out


def cfg(**kw) -> ScoringConfig:
    return ScoringConfig(output="/tmp/unused", **kw)


def test_a_local_two_cpu_ray_keeps_one_actor_of_one_cpu():
    assert plan_pool(cfg(), nodes(2)) == Pool(actors=1, cpus_per_actor=1.0)
    assert plan_pool(cfg(actors=1), nodes(2)) == Pool(1, 1.0)
    assert plan_pool(cfg(actors=2), nodes(2)) == Pool(2, 0.5)  # shared, as before
    assert plan_pool(cfg(), nodes(4)) == Pool(1, 3.0)
    assert plan_pool(cfg(), nodes(1)) == Pool(1, 0.5)


def test_three_small_nodes_get_whole_node_actors_and_a_node_for_decoding():
    # before: one actor of (3 - 1) = 2 CPUs, which no node has
    pool = plan_pool(cfg(), nodes(1, 1, 1))
    assert pool == Pool(actors=2, cpus_per_actor=1.0)
    assert plan_pool(cfg(actors=1), nodes(1, 1, 1)) == Pool(1, 1.0)
    assert plan_pool(cfg(cpus_per_actor=1), nodes(1, 1, 1)) == Pool(2, 1.0)


def test_three_eight_cpu_nodes_get_one_actor_each():
    # before: one actor of 23 CPUs
    assert plan_pool(cfg(), nodes(8, 8, 8)) == Pool(actors=3, cpus_per_actor=7.0)
    assert plan_pool(cfg(actors=1), nodes(8, 8, 8)) == Pool(1, 7.0)
    assert plan_pool(cfg(actors=6), nodes(8, 8, 8)) == Pool(6, 3.5)


def test_a_head_without_cpus_and_dead_nodes_do_not_count():
    assert plan_pool(cfg(), nodes(0, 4, 4, dead=2)) == Pool(2, 3.0)
    assert plan_pool(cfg(), nodes(0, 1, 1, 1, dead=1)) == Pool(2, 1.0)


def test_mixed_nodes_size_actors_by_the_largest_and_keep_room_to_decode():
    pool = plan_pool(cfg(), nodes(2, 2))
    assert pool == Pool(actors=3, cpus_per_actor=1.0)  # one node keeps a CPU for a decode and a write task


@pytest.mark.parametrize(
    ("config", "cluster", "match"),
    [
        (cfg(cpus_per_actor=2), nodes(1, 1, 1), "fits on no node: the largest alive node has 1 CPU"),
        (cfg(cpus_per_actor=4, actors=4), nodes(8, 4), "exceed the cluster's 12 CPUs"),
        (cfg(cpus_per_actor=3, actors=3), nodes(5, 5), "do not fit on the cluster's nodes"),
        (cfg(actors=4, cpus_per_actor=1), nodes(1, 1, 1), "exceed the cluster's 3 CPUs"),
    ],
)
def test_cpu_requests_no_node_can_host_fail_fast(config, cluster, match):
    with pytest.raises(ResourceError, match=match):
        plan_pool(config, cluster)


def test_gpu_pools_follow_the_gpu_slots():
    assert plan_pool(cfg(gpus_per_actor=1), nodes(0, 4, 4, gpus=(0, 1, 1))) == Pool(2, 1.0)
    assert plan_pool(cfg(gpus_per_actor=0.5), nodes(8, gpus=(1,))) == Pool(2, 1.0)
    assert plan_pool(cfg(gpus_per_actor=1, actors=1), nodes(8, 8, gpus=(0, 4))) == Pool(1, 1.0)
    # one GPU, two slots, but a 2-CPU node feeds one actor: a decode task needs the other CPU
    assert plan_pool(cfg(gpus_per_actor=0.5), nodes(2, gpus=(1,))) == Pool(1, 1.0)
    assert plan_pool(cfg(gpus_per_actor=0.5, actors=2), nodes(2, gpus=(1,))) == Pool(2, 1.0)  # as asked
    with pytest.raises(ResourceError, match="at most 1 on one node"):
        plan_pool(cfg(gpus_per_actor=2), nodes(4, 4, gpus=(1, 1)))
    with pytest.raises(ResourceError, match="has 0 GPU in total"):
        plan_pool(cfg(gpus_per_actor=1), nodes(0, 8))  # an autoscaler's GPU nodes not up: fail at once
    with pytest.raises(ResourceError, match="has 2 GPU in total"):
        plan_pool(cfg(gpus_per_actor=1, actors=3), nodes(4, 4, gpus=(1, 1)))
    with pytest.raises(ResourceError, match="fits on no node"):
        plan_pool(cfg(gpus_per_actor=1, cpus_per_actor=8), nodes(16, 4, gpus=(0, 1)))  # CPUs on the GPU node


def test_the_checkpoint_is_checked_from_its_header(tmp_path):
    from model.bundled import default_checkpoint

    packaged = default_checkpoint("prfnet-tiny")
    assert len(checkpoint_id("prfnet-tiny", None)) == 64
    assert checkpoint_id("prfnet-tiny", packaged) == checkpoint_id("prfnet-tiny", None)
    with pytest.raises(ScoringInputError, match="holds 'prfnet-tiny', not --model 'prfnet'"):
        checkpoint_id("prfnet", packaged)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(b"\x80\x04\x95" + b"\x00" * 40)
    with pytest.raises(ScoringInputError, match="pickled PyTorch checkpoint"):
        checkpoint_id("prfnet-tiny", str(evil))
    with pytest.raises(ScoringInputError, match="no such file"):
        checkpoint_id("prfnet-tiny", str(tmp_path / "absent.safetensors"))
    if default_checkpoint("prfnet") is None:
        assert checkpoint_id("prfnet", None) == UNTRAINED


def test_preflight_names_an_unknown_model():
    from model import UnknownModelError

    with pytest.raises(UnknownModelError, match="did you mean 'prfnet-tiny'"):
        preflight(cfg(model="prfnet-tny"))
