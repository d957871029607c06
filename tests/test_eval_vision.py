"""Vision benchmarks of `gpgrl eval`: loading (generated files and images), prompts, grading, gIoU / cIoU by
hand, the missing-image error, and the command end to end on a tiny Qwen2-VL saved to disk (CPU, offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import DATA_MISSING, SHARED_DATA
from gpgrl.eval.benchmarks import (
    VISION_BENCHMARKS,
    load_benchmarks,
    load_vision_benchmark,
    parse_benchmarks,
    vision_spec,
)
from gpgrl.eval.metrics import compute_metrics, grounding_ious, summarize
from gpgrl.eval.problem import MissingImagesError, Problem, UnknownBenchmarkError
from gpgrl.eval.vision import classification_question, grade_lisa
from gpgrl.rewards.boxes import box_overlap

REPO = Path(__file__).resolve().parents[1]
VISION_DATA = SHARED_DATA / "vision"
needs_data = pytest.mark.skipif(not VISION_DATA.is_dir(), reason=f"{DATA_MISSING} at {VISION_DATA}")


# --- pure functions: gIoU / cIoU by hand ------------------------------------------------------------------


def test_box_overlap_and_grounding_ious_by_hand():
    # gold (0,0)-(100,100), area 10000
    assert box_overlap((0, 0, 100, 50), (0, 0, 100, 100)) == (5000, 10000)  # IoU 0.5
    assert box_overlap((50, 50, 150, 150), (0, 0, 100, 100)) == (2500, 17500)  # IoU 1/7
    assert box_overlap((100, 0, 0, 100), (0, 0, 100, 100)) == (10000, 10000)  # corners swapped: same box
    assert box_overlap((200, 200, 300, 300), (0, 0, 100, 100)) == (0, 20000)  # disjoint
    assert box_overlap(None, (0, 0, 10, 20)) == (0.0, 200)  # no answer: union = gold's area
    pairs = [(5000, 10000), (2500, 17500), (0, 20000), (0.0, 200)]
    giou, ciou = grounding_ious(pairs)
    assert giou == pytest.approx((0.5 + 1 / 7 + 0 + 0) / 4)
    assert ciou == pytest.approx(7500 / 47700)
    # a small object missed weighs little in cIoU, as much as a large one in gIoU
    assert grounding_ious([(100, 100), (0, 1)]) == (0.5, pytest.approx(100 / 101))
    assert grounding_ious([]) == (0.0, 0.0) and grounding_ious([(0, 0)]) == (0.0, 0.0)


def test_lisa_grading_scales_the_answer_box_to_the_image():
    problem = Problem("lisa", "0", "the dog", "(0,0),(100,50)", images=("x.png",), meta={"box": [0, 0, 100, 50]})
    # a 200x100 image: (0,0),(500,500) on the 0-1000 scale is (0,0),(100,50) in pixels
    row = grade_lisa("<think>dog</think><answer>(0,0),(500,500)</answer>", problem, [(200, 100)])
    assert row["iou"] == pytest.approx(1.0) and row["correct"] and row["pred_box"] == [0, 0, 100, 50]
    half = grade_lisa("<answer>(0,0),(250,500)</answer>", problem, [(200, 100)])
    assert (half["intersection"], half["union"], half["correct"]) == (2500, 5000, False)
    none = grade_lisa("<answer>no idea</answer>", problem, [(200, 100)])
    assert (none["iou"], none["intersection"], none["union"], none["pred_box"]) == (0.0, 0.0, 5000, None)


def test_the_lisa_grade_and_the_grounding_reward_share_one_box_geometry():
    """The benchmark's IoU (eval) and the rewards' IoU / GIoU (rewards) come from gpgrl.rewards.boxes: on a
    1000 x 1000 image (scale 1) the grade's IoU is the reward side's box_iou, by hand 2500 / 17500 = 1/7."""
    import gpgrl.eval.vision as ev
    import gpgrl.rewards.vision as rv
    from gpgrl.rewards import boxes

    assert rv.box_iou is boxes.box_iou and rv.generalized_iou is boxes.generalized_iou
    assert rv.first_grounding_box is boxes.first_grounding_box and not hasattr(ev, "box_overlap")
    problem = Problem("lisa", "0", "the dog", "(0,0),(100,100)", images=("x.png",), meta={"box": [0, 0, 100, 100]})
    row = grade_lisa("<answer>(50,50),(150,150)</answer>", problem, [(1000, 1000)])
    assert (row["intersection"], row["union"]) == (2500, 17500)
    assert row["iou"] == pytest.approx(1 / 7) == boxes.box_iou((50, 50, 150, 150), (0, 0, 100, 100))
    # GIoU: the enclosing box (0,0)-(150,150) is 22500, so 1/7 - (22500 - 17500) / 22500
    assert boxes.generalized_iou((50, 50, 150, 150), (0, 0, 100, 100)) == pytest.approx(1 / 7 - 5000 / 22500)


def test_cvbench_grading():
    from gpgrl.eval.vision import grade_cvbench

    p = Problem("cvbench", "0", "How many?", "(B)", meta={"option": "2"})
    grades = [grade_cvbench(t, p, [])["correct"] for t in (
        "<think>two</think><answer>(B)</answer>", "<answer>B</answer>", "<answer>The answer is B</answer>",
        "<answer>2</answer>", "<answer>(A)</answer>", "<answer>B.</answer>", "<answer>3</answer>")]
    assert grades == [True, True, True, True, False, False, False]


def test_original_scripts_grading():
    """grading="original": what each fork's evaluation script counts as right, where it differs."""
    from gpgrl.eval.benchmarks import VISION_BENCHMARKS as V

    def both(bench, text, problem, sizes=()):
        return V[bench].grade(text, problem, sizes)["correct"], V[bench].script_grade(text, problem, sizes)["correct"]

    pet = Problem("pets37", "0", "q", "american_bulldog")
    assert both("pets37", "<answer>American Bulldog</answer>", pet) == (True, True)
    assert both("pets37", "<answer></answer>", pet) == (False, True)  # the script's empty-answer match
    assert both("pets37", "it is an american bulldog", pet) == (True, False)  # the script needs <answer>
    assert both("pets37", "<answer>\namerican bulldog\n</answer>", pet) == (True, False)  # ... on one line
    geo = Problem("geoqa", "0", "q", "140°")
    # math-verify reads no number in a bare "<answer>140°</answer>": the script counts it wrong
    assert both("geoqa", "<think>x</think><answer>140°</answer>", geo) == (True, False)
    assert both("geoqa", "<think>x</think><answer>$140^\\circ$</answer>", geo) == (True, True)
    assert both("geoqa", "the angle is 140.", geo) == (True, True)
    assert both("geoqa", "<answer>40°</answer>", geo) == (False, False)
    cv = Problem("cvbench", "0", "q", "(B)", meta={"option": "2", "choices": ["3", "2"]})
    assert both("cvbench", "<answer>(B)</answer>", cv) == (True, True)
    assert both("cvbench", "<answer>2</answer>", cv) == (True, True)
    assert both("cvbench", "<answer>(A)</answer>", cv) == (False, False)
    lisa = Problem("lisa", "0", "q", "(0,0),(100,50)", meta={"box": [0, 0, 100, 50]})
    assert both("lisa", "box (0,0),(500,500) <answer>none</answer>", lisa, [(200, 100)]) == (False, True)


def test_summary_adds_giou_ciou_and_categories():
    recs = [dict(benchmark="lisa", problem_index=p, sample_index=0, correct=i / u > 0.5, extracted_answer=None,
                 length=5, truncated=False, intersection=i, union=u) for p, (i, u) in enumerate([(90, 100), (1, 10)])]
    recs += [dict(benchmark="cvbench", problem_index=p, sample_index=0, correct=ok, extracted_answer="(A)",
                  length=5, truncated=False, category=cat)
             for p, (cat, ok) in enumerate([("Count", True), ("Count", False), ("Depth", True)])]
    s = summarize(recs)
    assert s["lisa"]["gIoU"] == pytest.approx(0.5) and s["lisa"]["cIoU"] == pytest.approx(91 / 110)
    assert s["lisa"]["pass@1"] == 0.5
    assert s["cvbench"]["pass@1/Count"] == 0.5 and s["cvbench"]["pass@1/Depth"] == 1.0
    m = compute_metrics(recs)
    assert m["eval/lisa/cIoU"] == pytest.approx(91 / 110) and "eval/avg/cIoU" not in m  # only where all have it


# --- registry, prompts and loading ------------------------------------------------------------------------


def test_names_and_aliases():
    assert list(VISION_BENCHMARKS) == ["geoqa", "flowers102", "pets37", "fgvc_aircraft", "cars196", "cvbench", "lisa"]
    assert parse_benchmarks("GEOQA, cv-bench,oxford_flowers,math500") == ["geoqa", "cvbench", "flowers102", "math500"]
    with pytest.raises(UnknownBenchmarkError, match="lisa"):  # the message lists vision names too
        parse_benchmarks("imagenet")


def test_prompts_follow_the_forks():
    assert vision_spec("geoqa").preset.template.format(question="Q?") == (
        "Q? Output the thinking process in <think> </think> and final answer (number) in <answer> </answer> tags.")
    assert vision_spec("geoqa").preset.system_prompt is None
    q = classification_question("fgvc_aircraft")
    assert q.startswith("This is an image containing an aircraft. Please identify the model of the aircraft")
    assert "<answer> </answer> tags.The output answer format" in q  # the original's missing space, kept
    assert vision_spec("pets37").preset.template.format(question=q) == "<image>\n" + q
    lisa = vision_spec("lisa").preset
    assert lisa.system_prompt.startswith("A conversation between User and Assistant.")
    assert "instruction: the dog. Output the thinking process" in lisa.template.format(question="the dog")
    assert vision_spec("cvbench").preset.template.format(question="P").startswith("P\nOutput the thinking")


@needs_data
def test_shared_geoqa_and_classification_files(tmp_path):
    folder = tmp_path / "Geo170K" / "images" / "test"
    folder.mkdir(parents=True)
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (8, 8)).save(folder / f"{i}.png")
    # the folder that holds Geo170K, or the image folder itself: both find ./Geo170K/images/test/0.png
    for image_dir in (tmp_path, folder):
        problems = load_benchmarks("geoqa", data_dir=VISION_DATA, image_dir=image_dir, limit=3)["geoqa"]
        assert [p.gold for p in problems] == ["140°", "65°", problems[2].gold]
        assert problems[0].images == (str(folder / "0.png"),)
    with pytest.raises(MissingImagesError) as e:
        load_benchmarks("geoqa", data_dir=VISION_DATA, image_dir=tmp_path, limit=4)
    msg = str(e.value)
    assert "1 of 4 images" in msg and repr(str(tmp_path)) in msg and "./Geo170K/images/test/3.png" in msg

    pets = tmp_path / "pets" / "images"  # the original's layout under --image-dir
    pets.mkdir(parents=True)
    for name in ("Abyssinian_201.jpg", "Abyssinian_202.jpg"):
        Image.new("RGB", (8, 8)).save(pets / name)
    problems = load_vision_benchmark("pets37", data_dir=VISION_DATA, image_dir=tmp_path, limit=2)
    assert [p.gold for p in problems] == ["abyssinian"] * 2 and problems[1].images == (str(pets / "Abyssinian_202.jpg"),)
    assert problems[0].question == classification_question("pets37")


def _images(folder: Path, n: int) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        Image.new("RGB", (56, 28 if i % 2 else 56), (40 * i % 255, 100, 200)).save(folder / f"img{i}.png")
        names.append(f"img{i}.png")
    return names


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cvbench_and_lisa_from_generated_files(tmp_path):
    names = _images(tmp_path / "img", 3)
    cv = _jsonl(tmp_path / "data" / "cvbench" / "test.jsonl", [
        {"idx": 7, "prompt": "How many cars?\n(A) 1\n(B) 2", "answer": "(B)", "image": names[0], "task": "Count"},
        {"question": "Which is closer?", "choices": ["cup", "box"], "answer": "A", "image": names[1], "task": "Depth"},
    ])
    problems = load_vision_benchmark("cvbench", data_dir=tmp_path / "data", image_dir=tmp_path / "img")
    assert [p.id for p in problems] == ["7", "1"] and [p.gold for p in problems] == ["(B)", "(A)"]
    assert problems[1].question == "Which is closer?\n(A) cup\n(B) box"
    assert problems[1].meta == {"category": "Depth", "option": "cup", "choices": ["cup", "box"]}
    assert problems[0].meta == {"category": "Count"}
    assert load_vision_benchmark("cvbench", source=str(cv), image_dir=tmp_path / "img")[0].question.startswith("How")

    # LISA as Visual-RFT's gen_box_ann.py writes it (a JSON list; paths from another machine: found by name)
    lisa = tmp_path / "lisa_test.json"
    lisa.write_text(json.dumps([{"image_path": f"dataset/reason_seg/ReasonSeg/test/{names[2]}",
                                 "instruction": ["the thing you sit on"], "boxes": [[2, 4, 30, 20]]}]))
    (p,) = load_benchmarks("lisa", sources=[f"lisa={lisa}"], image_dir=tmp_path / "img")["lisa"]
    assert p.question == "the thing you sit on" and p.meta["box"] == [2.0, 4.0, 30.0, 20.0]
    assert p.gold == "(2,4),(30,20)" and p.images == (str(tmp_path / "img" / names[2]),)
    with pytest.raises(FileNotFoundError, match="no Hugging Face copy"):
        load_vision_benchmark("lisa")
    with pytest.raises(ValueError, match="gold box"):
        load_vision_benchmark("lisa", source=str(_jsonl(tmp_path / "bad.jsonl", [{"image": "a", "instruction": "x",
                                                                                   "box": [1, 2]}])))


def test_missing_image_folder_is_named(tmp_path):
    src = _jsonl(tmp_path / "cls.jsonl", [{"image": "a.png", "class_name": "rose"}])
    with pytest.raises(MissingImagesError, match="pass --image-dir"):
        load_vision_benchmark("flowers102", source=str(src))


def _cvbench_parquet(path: Path) -> Path:
    """Two CV-Bench-shaped records with their images as PNG bytes (a Hugging Face ``Image`` column)."""
    import io

    import datasets
    from PIL import Image

    images = []
    for colour in ((200, 0, 0), (0, 0, 200)):
        buf = io.BytesIO()
        Image.new("RGB", (56, 28), colour).save(buf, format="PNG")
        images.append({"bytes": buf.getvalue(), "path": None})
    ds = datasets.Dataset.from_dict({
        "idx": [0, 1], "prompt": ["How many?\n(A) 1\n(B) 2", "Which is closer?\n(A) x\n(B) y"],
        "answer": ["(A)", "(B)"], "task": ["Count", "Depth"], "image": images,
    }).cast_column("image", datasets.Image())
    ds.to_parquet(str(path))
    return path


def test_images_are_opened_one_batch_at_a_time(tiny_vlm, tmp_path, monkeypatch):
    """Loading only looks files up (no image is opened); evaluate opens a batch's images just before
    generating that batch."""
    import PIL.Image

    import gpgrl.eval.evaluator as evaluator
    from gpgrl.models.vision import load_processor, load_vision_policy
    from gpgrl.rollout.engine import HFGenerateEngine

    names = _images(tmp_path / "img", 5)
    src = _jsonl(tmp_path / "cls.jsonl", [{"image": n, "class_name": "rose"} for n in names])
    real_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: pytest.fail("an image was opened while loading"))
    problems = load_benchmarks("flowers102", sources={"flowers102": str(src)}, image_dir=tmp_path / "img")
    monkeypatch.setattr(PIL.Image, "open", real_open)

    events: list[str] = []
    real_images, real_generate = evaluator.open_images, HFGenerateEngine.generate
    monkeypatch.setattr(evaluator, "open_images", lambda p: events.append("open") or real_images(p))
    monkeypatch.setattr(HFGenerateEngine, "generate", lambda self, *a, **k: events.append("gen") or
                        real_generate(self, *a, **k))
    metrics = evaluator.evaluate(load_vision_policy(str(tiny_vlm)), load_processor(str(tiny_vlm)), problems,
                                 batch_size=2, max_new_tokens=2, show_progress=False)
    assert events == ["open", "open", "gen", "open", "open", "gen", "open", "gen"]
    assert 0.0 <= metrics["eval/flowers102/pass@1"] <= 1.0


# --- the command end to end on a tiny Qwen2-VL -------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    from gpgrl.models.vision import VISION_INSTALL, require_vision

    try:
        require_vision()
    except ImportError:
        pytest.skip(f"vision extra not installed: {VISION_INSTALL}")
    from gpgrl.models.tiny import save_tiny_vlm

    return save_tiny_vlm(tmp_path_factory.mktemp("vlm") / "model")


def test_cli_vision_end_to_end(tiny_vlm, tmp_path, capsys):
    from gpgrl.eval.cli import main

    names = _images(tmp_path / "images" / "Geo170K" / "images" / "test", 3)
    data = tmp_path / "data"
    _jsonl(data / "geoqa" / "geoqa_test_prompts.jsonl", [
        {"image_path": f"./Geo170K/images/test/{n}", "question": f"Angle {i}?", "ground_truth": f"{40 + i}°"}
        for i, n in enumerate(names)])
    cls = data / "visual_rft_classification"
    cls.mkdir(parents=True)
    (cls / "pets.txt").write_text("abyssinian\nbeagle\n")
    _jsonl(cls / "pets_val.jsonl", [{"image": f"Geo170K/images/test/{n}", "label": i % 2,
                                     "class_name": ["abyssinian", "beagle"][i % 2]} for i, n in enumerate(names)])
    lisa = _jsonl(tmp_path / "lisa.jsonl", [{"image": f"Geo170K/images/test/{n}", "instruction": "the sky",
                                             "boxes": [[0, 0, 28, 14]]} for n in names[:2]])
    cv = _cvbench_parquet(tmp_path / "cv.parquet")  # images as bytes inside the file, as on the Hub
    out = tmp_path / "eval"
    args = ["--model", str(tiny_vlm), "--benchmarks", "geoqa,pets37,lisa,cvbench", "--data-dir", str(data),
            "--image-dir", str(tmp_path / "images"), "--source", f"lisa={lisa}", "--source", f"cvbench={cv}",
            "--samples", "2",
            "--temperature", "1.0", "--max-new-tokens", "6", "--batch-size", "4", "--output", str(out),
            "--quiet", "--seed", "1"]
    assert main(args) == 0
    console = capsys.readouterr().out
    for word in ("geoqa", "pets37", "lisa", "cvbench", "gIoU", "cIoU", "pass@1", "maj@2"):
        assert word in console

    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"metrics", "per_benchmark", "config"}
    cfg = results["config"]
    assert cfg["benchmarks"] == ["geoqa", "pets37", "lisa", "cvbench"]
    assert cfg["problems"] == {"geoqa": 3, "pets37": 3, "lisa": 2, "cvbench": 2}
    assert cfg["image_dir"] == str(tmp_path / "images") and cfg["sources"] == {"lisa": str(lisa), "cvbench": str(cv)}
    assert cfg["prompts"]["geoqa"]["preset"] == "r1v_geoqa" and cfg["prompts"]["lisa"]["preset"] == "visual_rft_lisa"
    assert cfg["prompt"]["preset"] == "r1v_geoqa" and "r1v_accuracy" in cfg["graders"]["geoqa"]
    per = results["per_benchmark"]
    assert per["lisa"]["problems"] == 2 and {"gIoU", "cIoU"} <= set(per["lisa"]) and "gIoU" not in per["geoqa"]

    rows = [json.loads(line) for line in (out / "samples.jsonl").open()]
    assert len(rows) == (3 + 3 + 2 + 2) * 2
    for r in rows:
        assert {"benchmark", "problem_id", "sample_index", "prompt", "completion", "extracted_answer", "gold",
                "correct", "score", "length", "truncated", "images"} <= set(r)
        assert "<|vision_start|>" in r["prompt"] and 1 <= r["length"] <= 6 and len(r["images"]) == 1
    lisa_rows = [r for r in rows if r["benchmark"] == "lisa"]
    assert all({"iou", "intersection", "union", "pred_box"} <= set(r) for r in lisa_rows)
    assert all(r["union"] >= 28 * 14 for r in lisa_rows)  # at least the gold box's area
    m = results["metrics"]
    giou, ciou = grounding_ious((r["intersection"], r["union"]) for r in lisa_rows)
    assert m["eval/lisa/gIoU"] == pytest.approx(giou) and m["eval/lisa/cIoU"] == pytest.approx(ciou)
    assert {r["category"] for r in rows if r["benchmark"] == "cvbench"} == {"Count", "Depth"}
    assert {"pass@1/Count", "pass@1/Depth"} <= set(per["cvbench"])
    assert all(r["images"] == ["<bytes>"] for r in rows if r["benchmark"] == "cvbench")
    for bench in ("geoqa", "pets37", "lisa", "cvbench"):
        mine = [r for r in rows if r["benchmark"] == bench]
        assert m[f"eval/{bench}/pass@1"] == pytest.approx(sum(r["correct"] for r in mine) / len(mine))
    assert [r["gold"] for r in rows if r["benchmark"] == "pets37"][::2] == ["abyssinian", "beagle", "abyssinian"]
    pets_prompt = next(r["prompt"] for r in rows if r["benchmark"] == "pets37")
    assert "<image>\nThis is an image containing a pet." in pets_prompt


def test_cli_vision_default_budget_is_the_forks(tiny_vlm, tmp_path):
    """Without --max-new-tokens, LISA gets Visual-RFT's 128 tokens (math would get 3072)."""
    from gpgrl.eval.cli import main

    names = _images(tmp_path / "images", 1)
    lisa = _jsonl(tmp_path / "lisa.jsonl", [{"image": names[0], "instruction": "the sky", "boxes": [[0, 0, 28, 14]]}])
    out = tmp_path / "eval"
    assert main(["--model", str(tiny_vlm), "--benchmarks", "lisa", "--source", f"lisa={lisa}", "--image-dir",
                 str(tmp_path / "images"), "--output", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["sampling"]["max_new_tokens"] == 128
    row = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    assert row["length"] <= 128


def test_cli_vision_errors(tiny_vlm, tmp_path, capsys):
    from gpgrl.eval.cli import main
    from gpgrl.models.tiny import save_tiny_model

    data = tmp_path / "data"
    _jsonl(data / "geoqa" / "geoqa_test_prompts.jsonl", [
        {"image_path": "./Geo170K/images/test/0.png", "question": "Q", "ground_truth": "1"}])
    base = ["--benchmarks", "geoqa", "--data-dir", str(data), "--quiet"]
    assert main(["--model", str(tiny_vlm), *base, "--image-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpgrl eval: error: geoqa: 1 of 1 images not found under --image-dir")
    assert str(tmp_path / "nowhere") in err and "./Geo170K/images/test/0.png" in err and "Traceback" not in err
    assert main(["--model", str(tiny_vlm), *base]) == 2
    assert "pass --image-dir" in capsys.readouterr().err

    _images(tmp_path / "img" / "Geo170K" / "images" / "test", 1)
    (tmp_path / "img" / "Geo170K" / "images" / "test" / "img0.png").rename(
        tmp_path / "img" / "Geo170K" / "images" / "test" / "0.png")
    text_model = save_tiny_model(tmp_path / "text")
    assert main(["--model", str(text_model), *base, "--image-dir", str(tmp_path / "img")]) == 2
    assert "need a vision-language model" in capsys.readouterr().err
    assert main(["--model", str(tiny_vlm), *base, "--image-dir", str(tmp_path / "img"), "--source", "lisa=x"]) == 2
    assert "--source names lisa" in capsys.readouterr().err

    out = tmp_path / "orig"  # and a run graded as R1-V's script grades
    assert main(["--model", str(tiny_vlm), *base, "--image-dir", str(tmp_path / "img"), "--grading", "original",
                 "--max-new-tokens", "4", "--output", str(out)]) == 0
    cfg = json.loads((out / "results.json").read_text())["config"]
    assert cfg["grading"] == "original" and cfg["graders"]["geoqa"].startswith("R1-V's script")


def test_trainer_evaluates_a_vision_benchmark(tmp_path):
    """train.eval_benchmarks may name vision benchmarks: images from train.eval_image_dir (default:
    data.image_dir), the policy's processor and the training prompt."""
    from gpgrl.config import from_dict
    from gpgrl.models.tiny import build_tiny_vlm, build_vlm_processor
    from gpgrl.train.trainer import Trainer

    names = _images(tmp_path / "img", 2)
    cls = tmp_path / "data" / "visual_rft_classification"
    cls.mkdir(parents=True)
    (cls / "pets.txt").write_text("abyssinian\nbeagle\n")
    _jsonl(cls / "pets_val.jsonl", [{"image": n, "label": i, "class_name": ""} for i, n in enumerate(names)])
    records = [{"question": "Colour?", "image": n, "answer": "blue"} for n in names]
    cfg = from_dict({"model": {"name_or_path": "tiny-vlm"},
                     "data": {"dataset": "mine", "image_column": "image", "image_dir": str(tmp_path / "img")},
                     "rollout": {"group_size": 2, "max_completion_length": 3},
                     "algorithm": {"preset": "gpg"},
                     "train": {"steps": 1, "prompts_per_step": 2, "micro_batch_size": 4, "eval_every": 1,
                               "eval_benchmarks": ["pets37"], "eval_data_dir": str(tmp_path / "data"),
                               "output_dir": str(tmp_path / "run")},
                     "log": {"progress": False, "report_to": ["jsonl"], "sample_every": 0}})
    processor = build_vlm_processor()
    trainer = Trainer(cfg, model=build_tiny_vlm(processor, seed=0), tokenizer=processor, dataset=records,
                      rewards=[lambda completions, **_: [0.0] * len(completions)])
    trainer.train()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/pets37/pass@1" in r for r in rows)
    samples = (tmp_path / "run" / "eval" / "step-000001" / "samples.jsonl").read_text().splitlines()
    assert [json.loads(line)["gold"] for line in samples] == ["abyssinian", "beagle"]
