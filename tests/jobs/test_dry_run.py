"""`prfeval evaluate --dry-run`: the manifest read, validated and grouped, what would run printed; no image opened,
no Ray started, nothing written. Its counts are those of a real run."""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest

from jobs import evaluate
from pipeline.image import tiling
from pipeline.io import storage
from pipeline.scoring import grouping, manifest, pairing


def counts(text: str) -> dict[str, str]:
    return dict(re.findall(r"^([a-z][a-z ]+): ([^\n(]+?)\s*(?:\(|$)", text, re.M))


def dry(capsys, *args: str) -> tuple[int, dict[str, str], str]:
    code = evaluate.main([*args, "--dry-run"])
    out = capsys.readouterr()
    return code, counts(out.out), out.out + out.err


def sweep_like(base, *, images_exist: bool = False) -> str:
    """A manifest with sizes and rates, as `prfeval sweep` writes, naming image files that do not exist."""
    rows = []
    for g, (w, h) in enumerate([(300, 200), (64, 64), (129, 128)]):
        for k, (codec, nbytes) in enumerate([("jpeg", 900), ("jpeg", 1800), ("webp", 1000), ("webp", 4000)]):
            rows.append({"ref_id": f"r{g}", "ref_uri": f"refs/r{g}.png", "dist_id": f"r{g}-{k}",
                         "dist_uri": f"dist/r{g}-{k}.png", "codec": codec, "codec_version": "1",
                         "setting": f"q={k}", "bytes": nbytes, "width": w, "height": h})  # fmt: skip
    uri = str(base / "sweep.csv")
    pd.DataFrame(rows).to_csv(uri, index=False)
    return uri


def test_counts_from_columns_without_images_or_ray(tmp_path, capsys):
    uri = sweep_like(tmp_path)
    out = tmp_path / "out"
    code, got, text = dry(capsys, "--manifest", uri, "--output", str(out))
    assert code == 0, text
    df = pd.read_csv(uri)
    assert got["groups"] == "3" and got["images"] == "12" and got["manifest error rows"] == "0"
    assert got["pairs all"] == str(3 * 6)
    for strategy in ("adjacent", "matched"):
        want = 0
        for _, g in df.groupby("ref_id", sort=False):
            items = [pairing.Item(r.codec, r.bytes * 8 / (r.width * r.height)) for r in g.itertuples()]
            want += len(pairing.pairs(items, strategy))
        assert got[f"pairs {strategy}"] == str(want)
    patches = sum(5 * len(tiling.grid(h, w, 128)) for w, h in [(300, 200), (64, 64), (129, 128)])
    assert got["estimated patches"] == f"{patches:,} at 128 px"
    assert not out.exists()  # nothing written (no Ray started: see test_the_cli_starts_no_ray_process)


def test_no_sizes_no_patch_estimate_and_no_rates_without_sizes(tmp_path, capsys):
    uri = str(tmp_path / "m.csv")
    pd.read_csv(sweep_like(tmp_path)).drop(columns=["width", "height"]).to_csv(uri, index=False)
    code, got, text = dry(capsys, "--manifest", uri, "--output", str(tmp_path / "o"))
    assert code == 0, text
    assert got["estimated patches"] == "unknown"
    assert "no width/height columns" in text
    assert got["pairs adjacent"] == "cannot be estimated" and got["pairs all"] == "18"


def test_manifest_errors_exit_2_and_row_errors_exit_1(tmp_path, capsys):
    df = pd.read_csv(sweep_like(tmp_path))
    dup = str(tmp_path / "dup.csv")
    pd.concat([df, df.iloc[[0]]]).to_csv(dup, index=False)
    code, _, text = dry(capsys, "--manifest", dup, "--output", str(tmp_path / "o"))
    assert code == 2 and "duplicate dist_id" in text
    missing = str(tmp_path / "missing.csv")
    df.drop(columns=["codec"]).to_csv(missing, index=False)
    assert dry(capsys, "--manifest", missing, "--output", str(tmp_path / "o"))[0] == 2
    code, _, text = dry(capsys, "--manifest", sweep_like(tmp_path), "--output", str(tmp_path / "o"),
                        "--model", "prfnet-tiyn")  # fmt: skip
    assert code == 2 and "did you mean" in text
    bad = str(tmp_path / "bad.csv")
    df.assign(bytes=["abc", *df["bytes"][1:]]).to_csv(bad, index=False)
    code, got, _ = dry(capsys, "--manifest", bad, "--output", str(tmp_path / "o"))
    assert code == 1 and got["manifest error rows"] == "1" and got["images"] == "11"


def test_the_cli_starts_no_ray_process(tmp_path):
    """In a fresh process: no Ray imported, no raylet or worker started."""
    script = (
        "import sys\nfrom jobs import evaluate\n"
        f"code = evaluate.main(['--manifest', {sweep_like(tmp_path)!r}, '--output', {str(tmp_path / 'o')!r}, "
        "'--dry-run'])\n"
        "assert 'ray' not in sys.modules, 'ray imported'\nsys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "groups: 3" in done.stdout


def test_columnar_groups_keep_manifest_order_and_contents(tmp_path):
    text = (
        "ref_id,ref_uri,dist_id,dist_uri,codec,bytes,team,n\n"
        "r2,b.png,x1,1.png,jpeg,1,a,1\nr1,a.png,y1,2.png,webp,2,b,\nr2,./b.png,x2,3.png,jpeg,,c,3\n"
        ",a.png,z,4.png,jpeg,4,d,4\nr3,c.png,w1,5.png,jpeg,5,e,5\nr1,a.png,y2,6.png,webp,6,f,6\n"
    )
    uri = tmp_path / "m.csv"
    uri.write_text(text)
    mf = manifest.read_manifest(str(uri))
    gs = manifest.groups(mf)
    assert [g.ref_id for g in gs] == ["r2", "r1", "r3"]
    assert [[d.dist_id for d in g.dists] for g in gs] == [["x1", "x2"], ["y1", "y2"], ["w1"]]
    assert gs[0].ref_uri == str(tmp_path / "b.png") and gs[0].dists[1].dist_uri == str(tmp_path / "3.png")
    assert [d.bytes for d in gs[0].dists] == [1, None]
    assert gs[1].dists[0].extras == {"team": "b", "n": None} and gs[1].dists[1].extras == {
        "team": "f",
        "n": 6.0,
    }
    # in blocks of any size, skipping finished groups, the same rows
    whole = grouping.ManifestGroups(mf)
    for per_block in (1, 2, 5):
        rows = [r for t in whole.tables(per_block) for r in t.to_pylist()]
        assert [grouping.record_of(r) for r in rows] == gs
    rest = whole.without({gs[1].key})
    assert [g.ref_id for g in rest] == ["r2", "r3"] and len(rest) == 2
    from pipeline.scoring.stages import input_table

    assert input_table(gs).to_pylist() == [r for t in whole.tables(3) for r in t.to_pylist()]


@pytest.mark.slow
def test_dry_run_counts_equal_a_real_run(ray_local, tmp_path, local_manifest, capsys):
    manifest_uri, df = local_manifest
    sized = storage.join(
        storage.parent(manifest_uri), "sized.csv"
    )  # the fixture's image sizes, as a sweep gives
    sizes = {"astronaut": (200, 176), "chelsea": (150, 110)}
    df = df.assign(width=[sizes[r][0] for r in df.ref_id], height=[sizes[r][1] for r in df.ref_id])
    storage.write_text(sized, df.to_csv(index=False))
    out = str(tmp_path / "out")
    for strategy in ("all", "adjacent", "matched"):
        code, got, text = dry(capsys, "--manifest", sized, "--output", out, "--pairs", strategy)
        assert code == 0, text
        assert not storage.exists(out)
        assert evaluate.main(["--manifest", sized, "--output", out + strategy, "--pairs", strategy,
                              "--no-progress"]) == 0  # fmt: skip
        printed = capsys.readouterr().out
        real = re.search(r"(\d+) reference group\(s\) scored.*?(\d+) images, (\d+) pairs", printed)
        assert real, printed
        assert (got["groups"], got["images"], got[f"pairs {strategy}"]) == real.groups()
