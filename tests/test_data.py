"""Data layer: synthetic benchmark, decoding/cache, every dataset adapter on tiny files in the real formats, bad inputs.

Every file is written inside the test (tmp_path); videos are short mp4s encoded with PyAV."""
import csv, io, json, os, shutil
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

from hbi_repro.config import get_config, override
from hbi_repro.data import synthetic as syn
from hbi_repro.data.video import (read_frames, write_video, FrameCache, DECODES, VideoError, check_reader,
                                  compress_videos, open_video, sample_indices)
from hbi_repro.data.datasets import (build_dataset, collate, SyntheticDataset, tokenize, AnnotationError, MSRVTTRetrieval, MSRVTTCaption,
                                     ActivityNetParagraphs, DiDeMoParagraphs, VideoQA, MSVDQA, ActivityNetQA,
                                     check_dataset, data_check, get_tokenizer)

F, L, S = 4, 12, 32  # frames, words, frame size used by the real-format tests


# ---------------------------------------------------------------- helpers
def make_video(path, seconds=3, fps=5, size=(64, 64), seed=0):
    "A short mp4 whose frame t has red level 10·t (so frames can be told apart)."
    rng = np.random.default_rng(seed)
    T = int(seconds * fps)
    fr = np.zeros((T, *size, 3), np.uint8)
    fr[..., 1] = rng.integers(0, 200)
    for t in range(T): fr[t, ..., 0] = 10 * t
    return write_video(path, fr, fps=fps)


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("v") / "base.mp4")


def put_videos(folder, names, src):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names: shutil.copy(src, folder / n)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f); w.writerow(header); w.writerows(rows)


def msrvtt_root(tmp, src, n_videos=6, caps=3):
    root = tmp / "msrvtt"
    put_videos(root / "videos", [f"video{i}.mp4" for i in range(n_videos)], src)
    sents = [{"caption": f"a person does thing {k} in video {i}", "video_id": f"video{i}", "sen_id": i * caps + k}
             for i in range(n_videos) for k in range(caps)]
    vids = [{"video_id": f"video{i}", "split": "train" if i < 4 else "test"} for i in range(n_videos)]
    (root / "MSRVTT_data.json").write_text(json.dumps({"videos": vids, "sentences": sents}))
    write_csv(root / "MSRVTT_train.9k.csv", ["video_id"], [[f"video{i}"] for i in range(4)])
    write_csv(root / "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id", "sentence"],
              [[f"ret{k}", f"msr{i}", f"video{i}", f"a test caption for video {i}"] for k, i in enumerate((4, 5))])
    return root


def qa_root(tmp, src, name="msrvtt"):
    root = tmp / name
    put_videos(root / "videos", [f"video{i}.mp4" for i in range(4)], src)
    (root / "qa").mkdir(parents=True)
    row = lambda v, q, a, t: json.dumps({"answer": a, "question": q, "video_id": f"video{v}", "answer_type": t})
    (root / "qa" / "train.jsonl").write_text("\n".join([row(0, "what is it?", "dog", "what"), row(1, "who sings?", "man", "who"),
                                                        row(1, "what is shown?", "dog", "what")]))  # no final newline, like val.jsonl
    (root / "qa" / "val.jsonl").write_text(row(2, "what plays?", "music", "what") + "\n")
    (root / "qa" / "test.jsonl").write_text("\n".join([row(3, "who talks?", "man", "who"), row(3, "what is red?", "zebra", "what")]) + "\n")
    (root / "qa" / "train_ans2label.json").write_text(json.dumps({"dog": 0, "man": 1, "music": 2}))
    return root


KW = dict(max_frames=F, max_words=L, frame_size=S)


def check_item(it, qa=False):
    assert it["video"].shape == (F, 3, S, S) and it["video"].dtype == torch.float32
    assert it["video_mask"].dtype == torch.bool and it["video_mask"].shape == (F,)
    # 3 s at 5 fps, official sampling (1 frame per second) → 3 real frames + 1 padded zero frame
    assert it["video_mask"].tolist() == [True, True, True, False] and (it["video"][3] == 0).all()
    assert it["text_ids"].shape == (L,) and it["text_ids"].dtype == torch.long and it["text_mask"].dtype == torch.bool
    n = int(it["text_mask"].sum())
    assert it["text_mask"][:n].all() and not it["text_mask"][n:].any()
    tok = get_tokenizer()
    assert it["text_ids"][0] == tok.sot_token_id and it["text_ids"][n - 1] == tok.eot_token_id
    assert isinstance(it["video_id"], str) and isinstance(it["caption"], str)


# ---------------------------------------------------------------- synthetic
def test_synthetic_deterministic_and_alignment():
    a, b = syn.make_benchmark(30, seed=5), syn.make_benchmark(30, seed=5)
    assert np.array_equal(a.frames, b.frames) and a.captions == b.captions and a.qa == b.qa
    assert {k: v.tolist() for k, v in a.splits.items()} == {k: v.tolist() for k, v in b.splits.items()}
    assert not np.array_equal(syn.make_benchmark(30, seed=6).frames, a.frames)
    assert a.frames.shape == (30, 12, 32, 32, 3) and a.frames.dtype == np.uint8
    tok = get_tokenizer()
    for v in range(len(a)):
        sp = a.spans(v)
        for c in range(len(a.captions[v])):
            A = a.word_alignment(v, c)
            for w, e in enumerate(a.word_events[v][c]):  # each row is exactly its event's span
                assert A[w].tolist() == [int(e >= 0 and sp[e, 0] <= f < sp[e, 1]) for f in range(12)]
            ids, mask, At = a.token_alignment(v, c, tok, 24)
            rows, p = [], 1
            for w, word in enumerate(a.words[v][c]):
                for _ in tok.encode(word): rows.append(A[w]); p += 1
            assert (At[1:p] == np.array(rows)).all() and At[0].sum() == 0 and At[p:].sum() == 0
    # hard negatives: twins with the same colours, shapes and actions sit in the same split, and negatives captions exist
    twins = [v for v in range(len(a)) if a.twin[v] >= 0]
    assert twins and all(a.group[v] == a.group[a.twin[v]] for v in twins)
    bag = lambda v: sorted(x for e in a.event_names(v) for x in e)
    assert all(bag(v) == bag(a.twin[v]) and a.event_names(v) != a.event_names(a.twin[v]) for v in twins)
    assert {k for v in range(len(a)) for k, _ in a.negatives[v]} == {"order", "binding", "action"}


def test_synthetic_dataset_items_and_vocab():
    cfg = get_config("smoke")
    for split in ("train", "val", "test"):
        ds = build_dataset(cfg, split)
        it = ds[0]
        f, l, s = cfg.data.max_frames, cfg.data.max_words, cfg.data.frame_size
        assert it["video"].shape == (f, 3, s, s) and it["alignment"].shape == (l, f)
        assert it["alignment"][~it["text_mask"]].sum() == 0 and it["alignment"].sum() > 0
    assert ds.num_answers == len(ds.answer_vocab) == len(ds.ans2label) and "circle" in ds.caption_vocab
    qa = build_dataset(get_config("smoke", task="qa"), "train")
    it = qa[0]
    assert it["answer"].dtype == torch.long and qa.answers[int(it["answer"])] == it["answer_text"] and it["answer_type"]
    cap = build_dataset(get_config("smoke", task="caption"), "test")
    it = cap[0]
    assert it["caption_ids"].shape == (cfg.eval.max_caption_len + 2,) and len(it["references"]) == 5
    long = build_dataset(override(get_config("smoke"), ["data.dataset=synthetic_long", "data.max_frames=16",
                                                       "data.max_words=64"]), "test")
    assert long[0]["alignment"].shape == (64, 16)


# ---------------------------------------------------------------- video decoding + cache
def test_sampling_padding_and_cache(tmp_path, clip_file):
    fr, m = read_frames(clip_file, 6)           # 15 frames at 5 fps, 1 fps → frames 0, 5, 10
    assert m.tolist() == [True] * 3 + [False] * 3 and (fr[3:] == 0).all()
    assert [int(round(fr[k, ..., 0].mean() / 10)) for k in range(3)] == [0, 5, 10]
    fr, m = read_frames(clip_file, 6, sampling="uniform")
    assert m.all() and sample_indices(15, 5.0, 6, "uniform").tolist() == [0, 3, 6, 8, 11, 14]
    cache = FrameCache(tmp_path / "cache")
    a, ma = read_frames(clip_file, 4, size=S, cache=cache)
    n = DECODES["count"]
    b, mb = read_frames(clip_file, 4, size=S, cache=cache)
    assert DECODES["count"] == n and np.array_equal(a, b) and np.array_equal(ma, mb) and a.shape == (4, S, S, 3)
    # through a dataset: the second epoch decodes nothing and yields identical tensors
    root = msrvtt_root(tmp_path, clip_file)
    ds = MSRVTTRetrieval(root, "test", cache_dir=tmp_path / "c2", **KW)
    first = [ds[i]["video"] for i in range(len(ds))]
    n = DECODES["count"]
    second = [ds[i]["video"] for i in range(len(ds))]
    assert DECODES["count"] == n and all(torch.equal(x, y) for x, y in zip(first, second))


def test_windows_read_their_frames_and_a_window_outside_the_video_names_the_file(clip_file):
    # the clip: 15 frames at 5 fps (3 s), frame k has brightness 10·k; 1 fps keeps one frame per second of the window
    fr, m = read_frames(clip_file, 4, start=1.0, end=31.0)              # end past the video's end: clamped
    assert m.tolist() == [True, True, False, False] and [int(round(fr[k, ..., 0].mean() / 10)) for k in range(2)] == [5, 10]
    for start, end in ((3.0, 31.0), (-0.5, 2.0), (2.0, 1.0)):          # starts at the end, before 0, end < start
        with pytest.raises(VideoError, match=r"base\.mp4.*window"): read_frames(clip_file, 4, start=start, end=end)
    with pytest.raises(ValueError, match="video_fps") as e: read_frames(clip_file, 4, video_fps=0.0)   # a setting, not the video
    assert not isinstance(e.value, VideoError)

def test_compress_a_folder_without_videos_is_an_error(tmp_path):
    (tmp_path / "src").mkdir(); (tmp_path / "src" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"no videos under .*src"): compress_videos(tmp_path / "src", tmp_path / "dst")

def test_augment_same_on_all_frames(clip_file):
    from hbi_repro.data.video import preprocess_clip
    fr = np.repeat(read_frames(clip_file, 1)[0], 5, axis=0)   # 5 identical frames
    for s in range(6):
        x = preprocess_clip(fr, np.ones(5, bool), S, augment=True, generator=torch.Generator().manual_seed(s))
        assert all(torch.equal(x[0], x[k]) for k in range(5))


# ---------------------------------------------------------------- adapters
def test_msrvtt_retrieval(tmp_path, clip_file):
    root = msrvtt_root(tmp_path, clip_file)
    tr, va, te = (MSRVTTRetrieval(root, s, **KW) for s in ("train", "val", "test"))
    assert len(va) == 1 and len(tr) == 3 * 3            # 4 train videos: 1 carved to val (1 caption), 3 × 3 captions
    assert not {r["video_id"] for r in va.records} & {r["video_id"] for r in tr.records}
    assert [te[i]["video_id"] for i in range(2)] == ["video4", "video5"] and te[1]["caption"] == "a test caption for video 5"
    for ds in (tr, va, te): check_item(ds[0])
    b = collate([te[0], te[1]])
    assert b["video"].shape == (2, F, 3, S, S) and b["text_ids"].shape == (2, L) and b["video_id"] == ["video4", "video5"]
    # build_dataset from a RunConfig (data root holding msrvtt/)
    cfg = override(get_config("paper"), {"data.root": str(tmp_path), "data.max_frames": F, "data.max_words": L,
                                         "data.frame_size": S, "data.augment": False})
    ds = build_dataset(cfg, "test", cache_dir=None)
    assert len(ds) == 2 and ds.summary()["items"] == 2


def test_msrvtt_caption(tmp_path, clip_file):
    root = msrvtt_root(tmp_path, clip_file)
    te = MSRVTTCaption(root, "test", caption_len=10, **KW)
    it = te[0]
    check_item(it)
    assert it["references"] == [f"a person does thing {k} in video 4" for k in range(3)]
    assert it["caption_ids"].shape == (10,) and it["caption_mask"].dtype == torch.bool
    assert len(MSRVTTCaption(root, "train", **KW)) == 9
    std = MSRVTTCaption(root, "test", protocol="standard", **KW)
    assert [r["video_id"] for r in std.records] == ["video4", "video5"]
    # a `videos` row without its split is named, with the file, instead of a bare KeyError
    data = json.loads((root / "MSRVTT_data.json").read_text())
    data["videos"][1].pop("split")
    (root / "MSRVTT_data.json").write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"MSRVTT_data.json videos\[1\].*'split'"):
        MSRVTTCaption(root, "test", protocol="standard", **KW)


def test_msrvtt_caption_test_video_without_captions_names_the_list_row(tmp_path, clip_file):
    "A test-list video with no caption in MSRVTT_data.json: the error names the list file and row (it named only MSRVTT_data.json)."
    root = msrvtt_root(tmp_path, clip_file)
    data = json.loads((root / "MSRVTT_data.json").read_text())
    data["sentences"] = [s for s in data["sentences"] if s["video_id"] != "video5"]
    (root / "MSRVTT_data.json").write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"MSRVTT_JSFUSION_test.csv row 3: unknown video id 'video5': no caption in MSRVTT_data.json"):
        MSRVTTCaption(root, "test", **KW)
    with pytest.raises(AnnotationError, match=r"MSRVTT_data.json videos\[5\]: unknown video id 'video5': no caption"):
        MSRVTTCaption(root, "test", protocol="standard", **KW)
    write_csv(root / "MSRVTT_train.9k.csv", ["video_id"], [["video0"], ["video1"], ["video0"], ["video9"]])
    with pytest.raises(AnnotationError, match=r"MSRVTT_train.9k.csv row 5: unknown video id 'video9'"):
        MSRVTTCaption(root, "trainval", **KW)
    rep = check_dataset("msrvtt_caption", root, ("test",), decode=False)
    assert rep["problems"]["unknown_video"]["first"] == [
        f"[test] {root / 'MSRVTT_JSFUSION_test.csv'} row 3: unknown video id 'video5': no caption in MSRVTT_data.json"]


def test_activitynet_paragraphs(tmp_path, clip_file):
    root = tmp_path / "activitynet"
    put_videos(root / "videos", [f"v_a{i}.mp4" for i in range(5)], clip_file)
    ann = lambda ids: {f"v_a{i}": {"duration": 3.0, "timestamps": [[0, 1], [1, 3]],
                                   "sentences": [f"first thing {i}.", f" second thing {i}."]} for i in ids}
    (root / "train.json").write_text(json.dumps(ann(range(3))))
    (root / "train_ids.json").write_text(json.dumps([f"v_a{i}" for i in range(3)]))
    (root / "val_1.json").write_text(json.dumps(ann((3, 4))))
    (root / "val_ids.json").write_text(json.dumps(["v_a3", "v_a4"]))
    te = ActivityNetParagraphs(root, "test", **KW)
    assert len(te) == 2 and te[0]["caption"] == "first thing 3. second thing 3."
    check_item(te[0])
    assert not te.summary().get("excluded_by_list")
    (root / "val_ids.json").write_text(json.dumps(["v_a4"]))    # the ids file defines the test set: v_a3 left out, counted
    te = ActivityNetParagraphs(root, "test", **KW)
    assert [r["video_id"] for r in te.records] == ["v_a4"] and te.summary()["excluded_by_list"] == 1
    (root / "val_ids.json").write_text(json.dumps(["v_a3", "v_a4"]))
    assert len(ActivityNetParagraphs(root, "train", **KW)) + len(ActivityNetParagraphs(root, "val", **KW)) == 3
    assert ActivityNetParagraphs(root, "val", seed=3, val_fraction=0.5, **KW).notes == [   # val_1.json exists: it is the test split
        "val_1.json is the test split: val is 50% of the videos of train.json that train_ids.json lists, drawn with "
        "data.seed=3, and train is the rest"]
    (root / "train_ids.json").write_text(json.dumps(["v_a0", "v_a0", "v_a1"]))   # a repeated id: v_a2 left out, counted once
    assert ActivityNetParagraphs(root, "trainval", **KW).summary()["excluded_by_list"] == 1


def test_didemo_paragraphs(tmp_path, clip_file):
    root = tmp_path / "didemo"
    put_videos(root / "videos", [f"clip{i}.mov.mp4" for i in range(4)], clip_file)  # compressed names keep .mov
    rows = lambda ids: [{"video": f"clip{i}.mov", "description": d, "times": [[0, 1]]}
                        for i in ids for d in (f"a dog runs {i}", f"it stops {i}")]
    for sp, ids in (("train", (0, 1)), ("val", (2,)), ("test", (3,))):
        (root / f"{sp}_data.json").write_text(json.dumps(rows(ids)))
    te = DiDeMoParagraphs(root, "test", **KW)
    assert len(te) == 1 and te[0]["caption"] == "a dog runs 3 it stops 3" and te.records[0]["end"] == 31.0
    check_item(te[0])
    assert len(DiDeMoParagraphs(root, "train", **KW)) == 2 and len(DiDeMoParagraphs(root, "val", **KW)) == 1
    tv = DiDeMoParagraphs(root, "trainval", **KW)                  # train + the val file (was: train_data.json alone)
    assert [(r["video_id"], r["caption"]) for r in tv.records] == [(f"clip{i}.mov", f"a dog runs {i} it stops {i}") for i in (0, 1, 2)]
    assert tv.records[2]["where"].startswith(str(root / "val_data.json"))
    (root / "val_data.json").write_text(json.dumps(rows((2, 1))))  # a video in both files is an error naming it
    with pytest.raises(AnnotationError, match=r"val_data.json \[2\] video 'clip1.mov': is also in .*train_data.json \[2\]"):
        DiDeMoParagraphs(root, "trainval", **KW)
    rep = check_dataset("didemo", root, decode=False)             # train and val sharing a video: the check says so
    assert rep["problems"]["split_overlap"]["first"] == ["video 'clip1.mov' is in both [train] and [val]"]
    (root / "val_data.json").unlink()                              # no val file: val is carved from train, trainval is all of it
    tr, va, tv = (DiDeMoParagraphs(root, sp, val_fraction=0.5, **KW) for sp in ("train", "val", "trainval"))
    assert len(tr) == len(va) == 1 and sorted(r["video_id"] for r in tr.records + va.records) == [r["video_id"] for r in tv.records]


def test_didemo_carved_val_is_disjoint_from_train(tmp_path, clip_file):
    "No val_data.json: train and the carved val split one list (train_list.txt), so no video is in both."
    root = tmp_path / "didemo"
    put_videos(root / "videos", [f"clip{i}.mp4" for i in range(10)], clip_file)
    (root / "train_data.json").write_text(json.dumps([{"video": f"clip{i}.mp4", "description": f"d {i}", "times": [[0, 1]]}
                                                      for i in range(10)]))
    (root / "train_list.txt").write_text("\n".join(f"clip{i}.mp4" for i in range(1, 10)))   # clip0 is not for training
    listed = {f"clip{i}.mp4" for i in range(1, 10)}
    for seed in range(4):
        tr = {r["video_id"] for r in DiDeMoParagraphs(root, "train", seed=seed, val_fraction=0.3, **KW).records}
        va = {r["video_id"] for r in DiDeMoParagraphs(root, "val", seed=seed, val_fraction=0.3, **KW).records}
        assert len(va) == 3 and not tr & va and tr | va == listed, (seed, sorted(tr), sorted(va))
    assert set(DiDeMoParagraphs(root, "val", **KW).checksums()) == {"didemo/train_data.json", "didemo/train_list.txt"}


def test_didemo_description_that_is_not_a_string_is_a_malformed_row(tmp_path, clip_file):
    "A null or non-string description used to become the query text 'None'."
    root = tmp_path / "didemo"
    put_videos(root / "videos", ["a.mp4", "b.mp4"], clip_file)
    (root / "train_data.json").write_text(json.dumps([{"video": "a.mp4", "description": "x", "times": [[0, 1]]}]))
    for bad, what in ((None, "null"), (7, "a number \\(7\\)"), (["a", "b"], "a list")):
        rows = [{"video": "a.mp4", "description": "a man runs", "times": [[0, 1]]},
                {"video": "b.mp4", "description": bad, "times": [[0, 1]]}]
        (root / "test_data.json").write_text(json.dumps(rows))
        with pytest.raises(AnnotationError, match=r"test_data.json \[1\]: description is not a string: " + what):
            DiDeMoParagraphs(root, "test", **KW)
    rep = check_dataset("didemo", root, ("test",), decode=False)
    assert rep["problems"]["malformed_row"]["first"] == [f"[test] {root / 'test_data.json'} [1]: description is not a string: a list ([\"a\", \"b\"])"]
    assert rep["items"] == {"test": 1}                        # b.mp4 had no other description: it is not a 'None' query
    (root / "test_data.json").write_text(json.dumps([{"video": ["a.mp4"], "description": "a man runs"}]))
    with pytest.raises(AnnotationError, match=r"test_data.json \[0\]: video is not a string: a list"):
        DiDeMoParagraphs(root, "test", **KW)                  # was: TypeError: unhashable type: 'list'


def test_msrvtt_qa_and_msvd_qa(tmp_path, clip_file):
    for cls, name in ((VideoQA, "msrvtt"), (MSVDQA, "msvd")):
        root = qa_root(tmp_path, clip_file, name)
        te = cls(root, "test", **KW)
        it = te[0]
        check_item(it)
        assert it["answer"].item() == 1 and it["answer_text"] == "man" and it["answer_type"] == "who"
        assert te[1]["answer"].item() == -1 and te[1]["answer_text"] == "zebra" and te.stats["oov"] == 1  # OOV → −1
        assert te.num_answers == 3 and len(cls(root, "val", **KW)) == 1 and len(cls(root, "train", **KW)) == 3
        b = collate([te[0], te[1]])
        assert b["answer"].tolist() == [1, -1] and b["answer_type"] == ["who", "what"]
    # no ans2label file: the vocabulary is the most frequent training answers
    (root / "qa" / "train_ans2label.json").unlink()
    tr = MSVDQA(root, "train", **KW)
    assert tr.answers == ["dog", "man"] and MSVDQA(root, "test", num_answers=1, **KW).ans2label == {"dog": 0}
    with pytest.raises(ValueError, match="test split"): MSVDQA(root, "test", drop_oov=True, **KW)
    assert len(MSVDQA(root, "train", num_answers=1, drop_oov=True, **KW)) == 2


def test_activitynet_qa(tmp_path, clip_file):
    root = tmp_path / "activitynet"
    put_videos(root / "videos", ["v_abc.mp4", "v_def.mp4"], clip_file)
    (root / "qa").mkdir()
    for sp, vid in (("train", "abc"), ("test", "def")):
        qs = [{"video_name": vid, "question": f"is it {k}", "question_id": f"v_{vid}_{k}"} for k in range(2)]
        ans = [{"answer": a, "type": t, "question_id": f"v_{vid}_{k}"} for k, (a, t) in enumerate((("yes", 3), ("red", 4)))]
        (root / "qa" / f"{sp}_q.json").write_text(json.dumps(qs)); (root / "qa" / f"{sp}_a.json").write_text(json.dumps(ans))
    te = ActivityNetQA(root, "test", **KW)
    check_item(te[0])
    assert [te[i]["answer_type"] for i in range(2)] == ["yes_no", "color"] and te[0]["video_id"] == "def"
    assert te.answers == ["red", "yes"] and te[1]["answer"].item() == 0


# ---------------------------------------------------------------- bad input
def test_missing_and_corrupt_and_zero_fps(tmp_path, clip_file):
    with pytest.raises(FileNotFoundError, match="nope.mp4"): read_frames(tmp_path / "nope.mp4")
    bad = tmp_path / "corrupt.mp4"; bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    with pytest.raises(VideoError, match="corrupt.mp4"): read_frames(bad)
    class Stub:
        def __len__(self): return 10
        def get_avg_fps(self): return 0.0
    with pytest.raises(VideoError, match="zero fps.*|zero.mp4"): check_reader(Stub(), "zero.mp4")
    # a missing video of an annotation row names the file and row; skip is counted, never on test
    root = msrvtt_root(tmp_path, clip_file)
    (root / "videos" / "video5.mp4").unlink()
    with pytest.raises(AnnotationError, match=r"MSRVTT_JSFUSION_test.csv row 3.*video5"): MSRVTTRetrieval(root, "test", **KW)
    with pytest.raises(ValueError, match="test split"): MSRVTTRetrieval(root, "test", on_error="skip", **KW)
    (root / "videos" / "video1.mp4").unlink()
    with pytest.raises(AnnotationError, match="video1"): MSRVTTRetrieval(root, "trainval", **KW)
    ds = MSRVTTRetrieval(root, "trainval", on_error="skip", **KW)
    assert ds.stats["skipped_missing_video"] == 3 and len(ds) == 9    # its three caption items skipped
    assert ds.problem_counts["missing_video"] == 1 and len(ds.problems) == 1   # but one missing video, listed once (not per caption)
    assert check_dataset("msrvtt", root, ("trainval",), decode=False)["problems"]["missing_video"]["count"] == 1
    # a corrupt file is reported by its name when read
    shutil.copy(bad, root / "videos" / "video4.mp4"); shutil.copy(clip_file, root / "videos" / "video5.mp4")
    with pytest.raises(VideoError, match="video4.mp4"): MSRVTTRetrieval(root, "test", **KW)[0]


def test_qa_answers_that_are_not_strings_are_malformed_rows(tmp_path, clip_file):
    """A null, list, object, boolean or float answer used to be scored as the out-of-vocabulary answer 'None' (or '[...]'),
    silently; it is a malformed row now, in every QA format. An integer answer is read as its string form."""
    root = qa_root(tmp_path, clip_file)
    row = lambda a, v=3: json.dumps({"answer": a, "question": "who talks?", "video_id": f"video{v}", "answer_type": "who"})
    for bad, what in ((None, "null"), (["man"], "a list"), ({"a": 1}, "an object"), (True, "a boolean"), (1.5, "a number")):
        (root / "qa" / "test.jsonl").write_text(row("man") + "\n" + row(bad) + "\n")
        with pytest.raises(AnnotationError, match=r"test.jsonl:2: answer is not a string: " + what):
            VideoQA(root, "test", **KW)
    (root / "qa" / "test.jsonl").write_text(row("man") + "\n" + row(None) + "\n")
    rep = check_dataset("msrvtt_qa", root, decode=False)      # data check lists it (it said 'no problems')
    assert rep["problems"]["malformed_row"]["first"] == [f"[test] {root / 'qa' / 'test.jsonl'}:2: answer is not a string: null"]
    assert rep["items"]["test"] == 1
    with open(root / "qa" / "train.jsonl", "a") as f: f.write("\n" + row(None, 0))
    ds = VideoQA(root, "train", on_error="skip", **KW)        # train: skipped and counted, like any malformed row
    assert ds.stats["skipped_malformed_row"] == 1 and len(ds) == 3 and "oov" not in ds.stats
    (root / "qa" / "test.jsonl").write_text(row(2) + "\n")  # an integer answer: its string form
    (root / "qa" / "train_ans2label.json").write_text(json.dumps({"dog": 0, "man": 1, "2": 2}))
    te = VideoQA(root, "test", **KW)
    assert te[0]["answer_text"] == "2" and te[0]["answer"].item() == 2
    # MSVD-QA *_qa.json
    root = qa_root(tmp_path, clip_file, "msvd")
    (root / "qa" / "test.jsonl").unlink()
    (root / "qa" / "test_qa.json").write_text(json.dumps([{"question": "who?", "answer": "man", "video_id": "video3"},
                                                          {"question": "who?", "answer": None, "video_id": "video3"}]))
    with pytest.raises(AnnotationError, match=r"test_qa.json \[1\]: answer is not a string: null"): MSVDQA(root, "test", **KW)
    # ActivityNet-QA *_a.json
    root = tmp_path / "activitynet"
    put_videos(root / "videos", ["v_abc.mp4"], clip_file); (root / "qa").mkdir()
    qs = [{"video_name": "abc", "question": f"how many {k}?", "question_id": f"q{k}"} for k in range(2)]
    for sp in ("train", "test"):
        (root / "qa" / f"{sp}_q.json").write_text(json.dumps(qs))
        (root / "qa" / f"{sp}_a.json").write_text(json.dumps([{"answer": 3, "type": 7, "question_id": "q0"},
                                                              {"answer": [], "type": 7, "question_id": "q1"}]))
    (root / "qa" / "train_ans2label.json").write_text(json.dumps({"3": 0, "no": 1}))
    with pytest.raises(AnnotationError, match=r"test_q.json \[1\]: the answer of question_id 'q1' in test_a.json is not a string: a list"):
        ActivityNetQA(root, "test", **KW)
    (root / "qa" / "train_ans2label.json").unlink()           # the vocabulary from the train answers: the bad row counted once
    tr = ActivityNetQA(root, "trainval", on_error="skip", **KW)
    assert [r["answer_text"] for r in tr.records] == ["3"] and tr.stats["skipped_malformed_row"] == 1 and tr.answers == ["3"]


def test_caption_problems(tmp_path, clip_file):
    root = msrvtt_root(tmp_path, clip_file)
    write_csv(root / "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id", "sentence"],
              [["ret0", "msr4", "video4", "   "], ["ret1", "msr5", "video5", "word " * 40]])
    with pytest.raises(AnnotationError, match=r"row 2: empty caption"): MSRVTTRetrieval(root, "test", **KW)
    write_csv(root / "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id", "sentence"],
              [["ret0", "msr4", "video4", "ok"], ["ret1", "msr5", "video5", "word " * 40]])
    ds = MSRVTTRetrieval(root, "test", **KW)                      # over max_words: truncated and counted
    assert ds.stats["truncated"] == 1 and ds[1]["text_mask"].all() and ds[1]["text_ids"][-1] == get_tokenizer().eot_token_id
    with pytest.raises(AnnotationError, match=r"row 3.*max_words=12 \(strict\)"):
        MSRVTTRetrieval(root, "test", strict_length=True, **KW)
    # unknown video id in the training list
    write_csv(root / "MSRVTT_train.9k.csv", ["video_id"], [["video0"], ["video77"]])
    with pytest.raises(AnnotationError, match=r"MSRVTT_train.9k.csv row 3: unknown video id 'video77'"):
        MSRVTTRetrieval(root, "train", **KW)
    assert MSRVTTRetrieval(root, "trainval", on_error="skip", **KW).stats["skipped_unknown_video"] == 1


def test_malformed_json_line(tmp_path, clip_file):
    root = qa_root(tmp_path, clip_file)
    with open(root / "qa" / "train.jsonl", "a") as f: f.write('\n{"answer": "dog", "question": "broken\n')
    with pytest.raises(AnnotationError, match=r"train.jsonl:4: malformed JSON line \(column 31: Unterminated string starting at\)"):
        VideoQA(root, "train", **KW)                                     # the quote before 'broken' is the line's 31st character
    ds = VideoQA(root, "train", on_error="skip", **KW)
    assert ds.stats["skipped_malformed_row"] == 1 and len(ds) == 3
    (root / "qa" / "test.jsonl").write_text('{"question": "q?", "video_id": "video3"}\n')  # row without answer
    with pytest.raises(AnnotationError, match=r"test.jsonl:1: row lacks"): VideoQA(root, "test", **KW)
    with pytest.raises(AnnotationError, match="empty caption"): tokenize("", 8, where="x")


# ---------------------------------------------------------------- data check + compress
def test_data_check_and_compress(tmp_path, clip_file):
    root = msrvtt_root(tmp_path, clip_file)
    assert check_dataset("msrvtt", tmp_path)["problems"] == {}
    (root / "videos" / "video5.mp4").unlink()
    (root / "videos" / "video4.mp4").write_bytes(b"garbage" * 100)
    (root / "videos" / "video0.mp4").write_bytes(b"")
    buf = io.StringIO()
    with redirect_stdout(buf): rc = data_check("msrvtt", root=str(tmp_path))
    out = buf.getvalue()
    assert rc == 1 and "missing_video: 1" in out and "video5" in out
    assert "unreadable_video: 1" in out and "video4.mp4" in out and "zero_length_video: 1" in out and "video0.mp4" in out
    # compress: valid outputs are kept, a broken input is reported and not copied
    src = tmp_path / "src"; src.mkdir()
    shutil.copy(clip_file, src / "good.mp4"); (src / "bad.avi").write_bytes(b"garbage" * 100)
    rep = compress_videos(src, tmp_path / "dst", fps=3, short_side=32, progress=False)
    assert rep["ok"] == ["good.mp4"] and [n for n, _ in rep["failed"]] == ["bad.avi"]
    assert not (tmp_path / "dst" / "bad.avi.mp4").exists()
    vr, n, fps = open_video(tmp_path / "dst" / "good.mp4")
    assert fps == 3 and n == 9 and vr[0].shape == (32, 32, 3)
    # two inputs that would become one output (good.mkv → good.mkv.mp4): refused before anything is written
    shutil.copy(clip_file, src / "good.mkv"); shutil.copy(clip_file, src / "good.mkv.mp4")
    with pytest.raises(ValueError, match=r"good.mkv.*good.mkv.mp4"):
        compress_videos(src, tmp_path / "dst2", fps=3, short_side=32, progress=False)
    assert not (tmp_path / "dst2").exists()


def test_texts_that_are_not_strings_say_so(tmp_path, clip_file):
    "A null, numeric or list caption or question is 'not a string' (it used to be reported as an 'empty caption')."
    with pytest.raises(AnnotationError, match=r"^x: empty caption$"): tokenize("  \n", 8, where="x")
    for bad, what in ((None, "null"), (12345, r"a number \(12345\)"), (["a", "b"], "a list")):
        with pytest.raises(AnnotationError, match=r"^x: text \(caption or question\) is not a string: " + what): tokenize(bad, 8, where="x")
    root = qa_root(tmp_path, clip_file)
    (root / "qa" / "test.jsonl").write_text(json.dumps({"answer": "dog", "question": ["what", "is", "it"], "video_id": "video3"}) + "\n")
    with pytest.raises(AnnotationError, match=r"test.jsonl:1: question is not a string: a list"): VideoQA(root, "test", **KW)
    # MSRVTT_data.json: a caption that is not a string is a malformed row naming the sentence and its video
    root = msrvtt_root(tmp_path, clip_file)
    data = json.loads((root / "MSRVTT_data.json").read_text())
    data["sentences"][4]["caption"] = None                    # video1's second caption
    (root / "MSRVTT_data.json").write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"MSRVTT_data.json sentences\[4\]: caption of 'video1' is not a string: null"):
        MSRVTTRetrieval(root, "trainval", **KW)
    with pytest.raises(AnnotationError, match=r"sentences\[4\]: caption of 'video1' is not a string"):
        MSRVTTCaption(root, "test", protocol="standard", **KW)   # even where only its references would have held it
    rep = check_dataset("msrvtt", root, ("train",), decode=False)
    assert rep["problems"]["malformed_row"]["count"] == 1


def test_data_check_decodes_the_sampled_frames(tmp_path, clip_file, monkeypatch):
    """A file whose index is intact but whose frame data is damaged opens fine in decord and fails only when its frames
    are decoded (reproduced by hand with an mp4 whose mdat was overwritten; random damage to this tiny clip mostly breaks
    the index instead, so here the decoder's failure is simulated): the check decodes the split's frames and reports it."""
    import hbi_repro.data.datasets as D
    root = msrvtt_root(tmp_path, clip_file)
    calls, real = [], D.read_frames
    def damaged(path, *a, **k):
        calls.append((Path(path).name, a))
        if Path(path).name == "video4.mp4": raise VideoError(f"{path}: decoding frames [0, 5, 10] failed (simulated)")
        return real(path, *a, **k)
    monkeypatch.setattr(D, "read_frames", damaged)
    open_video(root / "videos" / "video4.mp4")                # the file itself opens
    rep = check_dataset("msrvtt", tmp_path)
    assert list(rep["problems"]) == ["unreadable_video"] and rep["problems"]["unreadable_video"]["count"] == 1
    assert "video4.mp4" in rep["problems"]["unreadable_video"]["first"][0] and rep["videos"] == 6
    # each video decoded once, with the split's own settings (12 frames, official sampling at 1 fps, no window)
    assert sorted(n for n, _ in calls) == [f"video{i}.mp4" for i in range(6)]
    ds = MSRVTTRetrieval(root, "test", cache_dir=None)
    assert {a for _, a in calls} == {(ds.max_frames, ds.sampling, ds.video_fps, None, None)}
    calls.clear()
    assert check_dataset("msrvtt", tmp_path, decode=False)["problems"] == {} and calls == []   # annotations only


def test_cache_and_result_files_are_readable_and_a_read_only_cache_root_says_what_to_do(tmp_path, clip_file):
    "Files written through temp files get the umask's permissions (mkstemp's 0600 hid results and caches from other users)."
    from hbi_repro.provenance import atomic_write_text
    old = os.umask(0o027)
    try:
        f = atomic_write_text(tmp_path / "r" / "y.json", "{}")
        assert (f.stat().st_mode & 0o777) == 0o640               # the umask decides, not a fixed mode
        os.umask(0o022)
        f = atomic_write_text(tmp_path / "r" / "x.json", "{}")
        assert (f.stat().st_mode & 0o777) == 0o644
        cache = FrameCache(tmp_path / "cache")
        read_frames(clip_file, 2, size=S, cache=cache)
        npys = list((tmp_path / "cache").rglob("*.npy"))
        assert npys and all((x.stat().st_mode & 0o777) == 0o644 for x in npys)
    finally:
        os.umask(old)
    if os.geteuid() != 0:                                   # root ignores the read-only bit
        ro = tmp_path / "ro"; ro.mkdir(); ro.chmod(0o555)
        try:
            with pytest.raises(OSError, match="HBI_REPRO_FRAME_CACHE"): FrameCache(ro / "cache")
        finally: ro.chmod(0o755)
    else:
        (tmp_path / "file").write_text("")                  # a path under a file cannot be created, root or not
        with pytest.raises(OSError, match="HBI_REPRO_FRAME_CACHE"): FrameCache(tmp_path / "file" / "cache")
        cache = FrameCache(tmp_path / "c3")                 # a cache whose subfolder cannot be made: the first write says why
        (tmp_path / "c3" / "xx").write_text("")
        with pytest.raises(OSError, match="HBI_REPRO_FRAME_CACHE"): cache.put("xx" + "0" * 30, np.zeros(2, np.uint8))


def test_data_checksums_name_every_annotation_file_read(tmp_path, clip_file):
    "A run records the sha256 of the annotation files its splits were built from (real data) or of the generated splits (synthetic)."
    import hashlib
    from hbi_repro.data.datasets import data_checksums
    root = msrvtt_root(tmp_path, clip_file)
    tr, te = MSRVTTRetrieval(root, "train", **KW), MSRVTTRetrieval(root, "test", **KW)
    sha = lambda name: hashlib.sha256((root / name).read_bytes()).hexdigest()
    assert tr.checksums() == {"msrvtt/MSRVTT_data.json": sha("MSRVTT_data.json"), "msrvtt/MSRVTT_train.9k.csv": sha("MSRVTT_train.9k.csv")}
    assert te.checksums() == {"msrvtt/MSRVTT_JSFUSION_test.csv": sha("MSRVTT_JSFUSION_test.csv")}
    assert data_checksums(tr, None, te) == {**tr.checksums(), **te.checksums()}
    before = tr.checksums()
    write_csv(root / "MSRVTT_train.9k.csv", ["video_id"], [[f"video{i}"] for i in range(3)])   # another train list
    assert MSRVTTRetrieval(root, "train", **KW).checksums()["msrvtt/MSRVTT_train.9k.csv"] != before["msrvtt/MSRVTT_train.9k.csv"]
    assert tr.checksums() == before                         # taken when the split was read, not when asked
    # an annotation file that is a symlink to shared storage keeps its key in the dataset folder
    shared = tmp_path / "shared"; shared.mkdir()
    (root / "MSRVTT_JSFUSION_test.csv").rename(shared / "test.csv")
    (root / "MSRVTT_JSFUSION_test.csv").symlink_to(shared / "test.csv")
    assert MSRVTTRetrieval(root, "test", **KW).checksums() == te.checksums()
    # synthetic: a function of the generated split (frames, ids, captions, QA), not of the object
    b0, b1 = (syn.make_benchmark(12, seed=s, max_caption_tokens=14) for s in (0, 0))
    b2 = syn.make_benchmark(12, seed=1, max_caption_tokens=14)
    c = lambda b, split: SyntheticDataset(b, split, max_words=16).checksums()
    assert c(b0, "train") == c(b1, "train") and list(c(b0, "train")) == ["synthetic/train"]
    assert c(b0, "train") != c(b2, "train") and c(b0, "train")["synthetic/train"] != c(b0, "test")["synthetic/test"]
    b1.frames[b1.splits["test"][0], 0, 0, 0, 0] ^= 1                       # one pixel of one test video
    assert c(b0, "test") != c(b1, "test") and c(b0, "train") == c(b1, "train")


def test_synthetic_written_in_msrvtt_format_reads_back(tmp_path):
    b = syn.make_benchmark(8, seed=0, twin_prob=0.0, max_caption_tokens=14)
    root = syn.write_msrvtt_format(b, tmp_path / "msrvtt")
    te = MSRVTTRetrieval(root, "test", max_frames=12, max_words=16, frame_size=32)
    it = te[0]
    v = b.splits["test"][0]
    assert it["video_id"] == b.video_ids[v] and it["caption"] == b.captions[v][0] and it["video_mask"].all()
    # 12 frames at 1 fps: the official sampling keeps all of them; pixels survive the lossy codec closely
    fr, m = read_frames(root / "videos" / f"{b.video_ids[v]}.mp4", 12)
    assert m.all() and np.abs(fr.astype(int) - b.frames[v].astype(int)).mean() < 8
    qa = VideoQA(root, "test", max_frames=12, max_words=16, frame_size=32)
    assert qa.num_answers == len(syn.ANSWER_VOCAB) and qa.stats["oov"] == 0 and len(qa) == len(b.split_qa("test"))


# ---------------------------------------------------------------- bad input: nothing dropped silently, every error names its file
def test_compressed_names_are_found_by_their_annotation_ids(tmp_path, clip_file):
    "compress: x.mp4 keeps its name, any other x.ext becomes x.ext.mp4; ids with (DiDeMo) or without (ActivityNet) the extension find it."
    from hbi_repro.data.datasets import VideoIndex
    raw = tmp_path / "raw"; raw.mkdir()
    for n in ("clip0.mov", "v_abc.mkv", "video1.mp4"): shutil.copy(clip_file, raw / n)
    root = tmp_path / "didemo"
    rep = compress_videos(raw, root / "videos", fps=3, short_side=32, progress=False)
    assert sorted(rep["ok"]) == ["clip0.mov", "v_abc.mkv", "video1.mp4"] and not rep["failed"]
    assert sorted(p.name for p in (root / "videos").iterdir()) == ["clip0.mov.mp4", "v_abc.mkv.mp4", "video1.mp4"]
    (root / "test_data.json").write_text(json.dumps([{"video": "clip0.mov", "description": "a dog runs", "times": [[0, 1]]}]))
    te = DiDeMoParagraphs(root, "test", **KW)                 # the round trip of the review: compress, then find
    assert te.records[0]["path"].name == "clip0.mov.mp4" and te[0]["video_mask"].any()
    idx = VideoIndex(root / "videos")
    assert idx.find("abc", ("v_", "")).name == idx.find("v_abc").name == "v_abc.mkv.mp4"
    assert idx.find("video1").name == "video1.mp4" and idx.find("clip0").name == "clip0.mov.mp4" and idx.find("clip1") is None
    shutil.copy(clip_file, raw / "clip0.mov.mp4")             # would be written to the same file as clip0.mov
    with pytest.raises(ValueError, match=r"clip0\.mov.*clip0\.mov\.mp4"):
        compress_videos(raw, tmp_path / "dst2", fps=3, short_side=32, progress=False)


def test_data_check_reports_ids_that_name_several_files(tmp_path, clip_file):
    "A raw and a compressed copy of one video under videos/: the loader picks one (root folder first), the check says so."
    from hbi_repro.data.datasets import VideoIndex
    root = msrvtt_root(tmp_path, clip_file)
    put_videos(root / "videos" / "compressed", ["video5.mp4"], clip_file)
    shutil.copy(clip_file, root / "videos" / "video2.avi")
    idx = VideoIndex(root / "videos")
    assert idx.find("video5") == root / "videos" / "video5.mp4" and len(idx.matches("video5")) == 2
    assert idx.matches("video3") == [root / "videos" / "video3.mp4"]
    rep = check_dataset("msrvtt", tmp_path, decode=False)
    amb = rep["problems"]["ambiguous_video"]
    assert amb["count"] == 2 and list(rep["problems"]) == ["ambiguous_video"]
    assert any("'video5'" in w and "compressed/video5.mp4" in w for w in amb["first"])
    assert any("'video2'" in w and "video2.avi" in w for w in amb["first"])


def test_didemo_split_lists_are_counted_never_silent(tmp_path, clip_file):
    "A `{split}_list.txt` defines the split (the official protocol): unlisted annotated videos are left out and counted."
    root = tmp_path / "didemo"
    put_videos(root / "videos", [f"c{i}.mp4" for i in range(7)], clip_file)
    rows = lambda ids: [{"video": f"c{i}.mp4", "description": f"d {i}", "times": [[0, 1]]} for i in ids]
    for sp, ids in (("train", (0, 1, 2)), ("val", (3,)), ("test", (4, 5, 6))):
        (root / f"{sp}_data.json").write_text(json.dumps(rows(ids)))
    (root / "train_list.txt").write_text("c0.mp4\nc1\n")     # c2 is not listed
    (root / "test_list.txt").write_text("c4.mp4\nc5\n")      # nor c6
    tr = DiDeMoParagraphs(root, "train", **KW)                # train: restricted by the list, and counted
    assert len(tr) == 2 and tr.summary()["excluded_by_list"] == 1
    te = DiDeMoParagraphs(root, "test", **KW)                 # test too, and counted where a run records it
    assert [r["video_id"] for r in te.records] == ["c4.mp4", "c5.mp4"] and te.summary()["excluded_by_list"] == 1
    rep = check_dataset("didemo", root, ("train", "test"), decode=False)
    assert rep["excluded_by_list"] == {"train": 1, "test": 1} and not rep["problems"]
    # trainval = train + the val file, each restricted by its own list, the exclusions of both counted
    (root / "val_data.json").write_text(json.dumps(rows((3, 2))))
    (root / "val_list.txt").write_text("c3.mp4\n")                        # c2 is in val_data.json but not listed
    tv = DiDeMoParagraphs(root, "trainval", **KW)
    assert [r["video_id"] for r in tv.records] == ["c0.mp4", "c1.mp4", "c3.mp4"] and tv.summary()["excluded_by_list"] == 2


def test_csv_rows_with_the_wrong_number_of_fields(tmp_path, clip_file):
    root = msrvtt_root(tmp_path, clip_file)
    f = root / "MSRVTT_JSFUSION_test.csv"
    f.write_text("key,vid_key,video_id,sentence\nret0,msr4,video4,a man, then a dog runs\nret1,msr5,video5,ok\n")
    with pytest.raises(AnnotationError, match=r"MSRVTT_JSFUSION_test.csv row 2: 5 fields, but the header has 4"):
        MSRVTTRetrieval(root, "test", **KW)                   # was: caption silently cut to 'a man'
    f.write_text("key,vid_key,video_id,sentence\nret0,msr4,video4,fine\nret1,msr5,video5\n")
    with pytest.raises(AnnotationError, match=r"MSRVTT_JSFUSION_test.csv row 3: 3 fields, but the header has 4"):
        MSRVTTRetrieval(root, "test", **KW)                   # was: 'empty caption'
    f.write_text('key,vid_key,video_id,sentence\nret0,msr4,video4,"a man, then a dog runs"\n\nret1,msr5,video5,ok\n')
    te = MSRVTTRetrieval(root, "test", **KW)                  # a quoted comma is fine; a blank line is no row
    assert [r["caption"] for r in te.records] == ["a man, then a dog runs", "ok"] and te.records[1]["where"].endswith("row 4")
    write_csv(root / "MSRVTT_train.9k.csv", ["video_id"], [["video0"], ["video1", "x"], ["video2"]])
    with pytest.raises(AnnotationError, match=r"MSRVTT_train.9k.csv row 3: 2 fields, but the header has 1"):
        MSRVTTRetrieval(root, "trainval", **KW)
    assert MSRVTTRetrieval(root, "trainval", on_error="skip", **KW).stats["skipped_malformed_row"] == 1


def test_ans2label_must_be_the_labels_0_to_n_minus_1(tmp_path, clip_file):
    root = qa_root(tmp_path, clip_file)
    f = root / "qa" / "train_ans2label.json"
    for a2l, why in (({"dog": 1, "man": 2, "music": 3}, r"missing label\(s\) \[0\]"),
                     ({"dog": 0, "man": 0, "music": 2}, r"label 0 is given to 'dog', 'man'"),
                     ({"dog": 0, "man": "1", "music": 2}, r"'man' has label '1', not an integer"),
                     ({}, r"no answers")):
        f.write_text(json.dumps(a2l))
        with pytest.raises(AnnotationError, match=r"train_ans2label.json: .*" + why): VideoQA(root, "test", **KW)


def test_activitynet_bad_sentences_and_ids(tmp_path, clip_file):
    root = tmp_path / "activitynet"
    put_videos(root / "videos", ["v_x.mp4", "v_y.mp4"], clip_file)
    ann = {"v_x": {"duration": 3, "sentences": ["one.", 2]}, "v_y": {"duration": 3, "sentences": ["ok"]}}
    (root / "val_1.json").write_text(json.dumps(ann))
    with pytest.raises(AnnotationError, match=r"val_1.json \['v_x'\]: sentences\[1\] is not a string"):
        ActivityNetParagraphs(root, "test", **KW)             # was: the sentence silently left out
    ann["v_x"]["sentences"] = ["one.", "two."]; (root / "val_1.json").write_text(json.dumps(ann))
    te = ActivityNetParagraphs(root, "test", **KW)            # no val_ids.json: every video of val_1.json (documented)
    assert [(r["video_id"], r["caption"]) for r in te.records] == [("v_x", "one. two."), ("v_y", "ok")]
    (root / "val_ids.json").write_text(json.dumps(["v_x", ["v_y"]]))
    with pytest.raises(AnnotationError, match=r"val_ids.json \[1\]: video id is not a string"):
        ActivityNetParagraphs(root, "test", **KW)             # was: TypeError: unhashable type
    (root / "val_ids.json").write_text(json.dumps({"v_x": 1}))
    with pytest.raises(AnnotationError, match=r"val_ids.json: expected a JSON list of video ids"):
        ActivityNetParagraphs(root, "test", **KW)


def test_qa_files_duplicate_ids_and_wrong_shapes(tmp_path, clip_file):
    root = tmp_path / "activitynet"
    put_videos(root / "videos", ["v_x.mp4"], clip_file); (root / "qa").mkdir()
    q = lambda *ids: [{"video_name": "x", "question": f"q {k}?", "question_id": i} for k, i in enumerate(ids)]
    a = lambda *ids: [{"answer": f"a{k}", "type": 3, "question_id": i} for k, i in enumerate(ids)]
    w = lambda sp, qs, ans: ((root / "qa" / f"{sp}_q.json").write_text(json.dumps(qs)),
                             (root / "qa" / f"{sp}_a.json").write_text(json.dumps(ans)))
    w("train", q("t1"), a("t1"))
    w("test", q("q1", "q2"), a("q1", "q1"))
    with pytest.raises(AnnotationError, match=r"test_a.json: question_id 'q1' appears more than once"):
        ActivityNetQA(root, "test", **KW)                     # was: both questions joined to the last 'q1' answer
    w("test", q("q1", "q1"), a("q1", "q2"))
    with pytest.raises(AnnotationError, match=r"test_q.json: question_id 'q1' appears more than once"):
        ActivityNetQA(root, "test", **KW)
    # MSVD-QA *_qa.json must be a list
    root = qa_root(tmp_path, clip_file, "msvd")
    (root / "qa" / "test.jsonl").unlink()
    (root / "qa" / "test_qa.json").write_text(json.dumps({"0": {"question": "q", "answer": "dog", "video_id": 1}}))
    with pytest.raises(AnnotationError, match=r"test_qa.json: expected a JSON list"): MSVDQA(root, "test", **KW)


def test_youtube_mapping_lines_with_the_wrong_number_of_fields(tmp_path, clip_file):
    "A youtube_mapping.txt line that is not `<clip name> vid<N>` used to be skipped silently (its video then 'not found')."
    root = qa_root(tmp_path, clip_file, "msvd")
    rows = lambda *vs: [{"question": "what is it?", "answer": "dog", "video_id": v} for v in vs]
    for sp, vs in (("train", (0, 1)), ("val", (2,)), ("test", (3,))):
        (root / "qa" / f"{sp}.jsonl").unlink(); (root / "qa" / f"{sp}_qa.json").write_text(json.dumps(rows(*vs)))
    m = root / "youtube_mapping.txt"
    m.write_text("video0 vid0\nvideo1 vid1\nvideo2 vid2\nvideo3 vid3\n")
    assert [r["video_id"] for r in MSVDQA(root, "test", **KW).records] == ["video3"]
    m.write_text("video0 vid0\nvideo1 vid1\n\nvideo2 vid2 extra\nvideo3 vid3\n")
    with pytest.raises(AnnotationError, match=r"youtube_mapping.txt:4: 3 fields, expected 2 \(<clip name> vid<N>\): 'video2 vid2 extra'"):
        MSVDQA(root, "test", **KW)
    ds = MSVDQA(root, "train", on_error="skip", **KW)
    assert ds.stats["skipped_malformed_row"] == 1 and len(ds) == 2
    rep = check_dataset("msvd_qa", root, ("val",), decode=False)
    assert rep["problems"]["malformed_row"]["first"][0].startswith(f"[val] {m}:4: 3 fields") and rep["problems"]["malformed_row"]["count"] == 1


def test_jsonl_lines_split_on_newline_only_and_files_are_utf8(tmp_path, clip_file):
    root = qa_root(tmp_path, clip_file)
    row = lambda q: json.dumps({"question": q, "answer": "dog", "video_id": "video3"}, ensure_ascii=False)
    (root / "qa" / "test.jsonl").write_text(row("what\u2028is it?") + "\n" + row("next\x85one?") + "\n{broken\n",
                                            encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"test.jsonl:3: malformed JSON"): VideoQA(root, "test", **KW)
    (root / "qa" / "test.jsonl").write_text(row("what\u2028is it?") + "\r\n" + row("naïve café?") + "\n", encoding="utf-8")
    assert [r["caption"] for r in VideoQA(root, "test", **KW).records] == ["what\u2028is it?", "naïve café?"]
    (root / "qa" / "test.jsonl").write_bytes(row("caf\xe9").encode("latin-1") + b"\n")
    with pytest.raises(AnnotationError, match=r"test.jsonl: not UTF-8 text"): VideoQA(root, "test", **KW)


def test_annotation_files_with_a_utf8_byte_order_mark(tmp_path, clip_file):
    "Excel and some Windows editors save UTF-8 with a BOM: the header used to read ['\\ufeffvideo_id']."
    root = msrvtt_root(tmp_path, clip_file)
    bom = lambda f: f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes())
    for f in ("MSRVTT_train.9k.csv", "MSRVTT_JSFUSION_test.csv", "MSRVTT_data.json"): bom(root / f)
    assert len(MSRVTTRetrieval(root, "trainval", **KW)) == 12 and len(MSRVTTRetrieval(root, "test", **KW)) == 2
    qa = qa_root(tmp_path, clip_file)
    bom(qa / "qa" / "test.jsonl"); bom(qa / "qa" / "train_ans2label.json")
    assert [r["caption"] for r in VideoQA(qa, "test", **KW).records] == ["who talks?", "what is red?"]
    (qa / "qa" / "test.jsonl").write_bytes(b"\xef\xbb\xbf" + b'{"question": "caf\xe9"}\n')   # a BOM, then Latin-1
    with pytest.raises(AnnotationError, match=r"test.jsonl: not UTF-8 text \(invalid continuation byte at byte 20\)"):
        VideoQA(qa, "test", **KW)                             # the byte offset counts the BOM


def test_collect_is_refused_on_the_test_split(tmp_path, clip_file):
    "on_error='collect' drops bad rows like 'skip': refused on test (`hbi-repro data check` still reports test problems)."
    root = msrvtt_root(tmp_path, clip_file)
    (root / "videos" / "video5.mp4").unlink()
    with pytest.raises(ValueError, match="test split"): MSRVTTRetrieval(root, "test", on_error="collect", **KW)
    cfg = override(get_config("paper"), {"data.root": str(tmp_path), "data.max_frames": F, "data.max_words": L,
                                         "data.frame_size": S, "data.augment": False})
    with pytest.raises(ValueError, match="test split"): build_dataset(cfg, "test", on_error="collect", cache_dir=None)
    assert len(build_dataset(cfg, "train", on_error="collect", cache_dir=None)) == 9
    rep = check_dataset("msrvtt", tmp_path, decode=False)
    assert rep["problems"]["missing_video"]["count"] == 1 and "[test]" in rep["problems"]["missing_video"]["first"][0]


def test_annotation_files_are_read_as_utf8_whatever_the_locale(tmp_path):
    "Under an ASCII locale (LC_ALL=C, UTF-8 mode off) the readers still decode UTF-8; the locale's default would fail."
    import subprocess, sys
    (tmp_path / "a.jsonl").write_text(json.dumps({"q": "naïve café"}, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp_path / "a.json").write_text(json.dumps(["vidéo"], ensure_ascii=False), encoding="utf-8")
    (tmp_path / "a.csv").write_text("video_id,sentence\nv1,crème brûlée\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("vidéo1\n", encoding="utf-8")
    code = ("import sys; from hbi_repro.data.datasets import read_jsonl, read_json, read_csv, read_lines; d = sys.argv[1]; "
            "print(ascii([read_jsonl(d + '/a.jsonl')[0][1]['q'], read_json(d + '/a.json')[0], "
            "read_csv(d + '/a.csv', ('sentence',))[0][1]['sentence'], read_lines(d + '/a.txt')[0]]))")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env,
                       cwd=Path(__file__).resolve().parent.parent)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == ascii(["naïve café", "vidéo", "crème brûlée", "vidéo1"])


def test_data_check_counts_every_problem_beyond_the_listed_ones(tmp_path, clip_file):
    "A dataset lists its first 1000 bad rows; `data check` still counts all of them (it used to report 1000)."
    root = tmp_path / "didemo"
    put_videos(root / "videos", ["c0.mp4"], clip_file)
    good = {"video": "c0.mp4", "description": "a dog", "times": [[0, 1]]}
    (root / "test_data.json").write_text(json.dumps([good] + [{"video": f"x{i}.mp4"} for i in range(1234)]))
    rep = check_dataset("didemo", root, ("test",), decode=False)
    p = rep["problems"]["malformed_row"]
    assert p["count"] == 1234 and len(p["first"]) == 10 and p["first"][0].startswith(f"[test] {root / 'test_data.json'} [1]")


def test_data_check_of_a_folder_that_does_not_exist(tmp_path):
    "A mistyped --root gets one line naming the folder (it used to say 'videos folder not found' for every split)."
    rep = check_dataset("didemo", tmp_path / "nowhere", decode=False)
    assert list(rep["problems"]) == ["missing_folder"] and f"{tmp_path / 'nowhere'} does not exist" in rep["problems"]["missing_folder"]["first"][0]


def test_data_check_says_where_it_looked(tmp_path, capsys):
    "--root X without msrvtt/: the messages name X/msrvtt/ too, not only X/videos and X/MSRVTT_data.json."
    (tmp_path / "X").mkdir()
    rep = check_dataset("msrvtt", tmp_path / "X", decode=False)
    p = rep["problems"]
    sub = f"{tmp_path / 'X' / 'msrvtt'}/"
    assert f"{tmp_path / 'X' / 'videos'}" in p["missing_folder"]["first"][0] and sub in p["missing_folder"]["first"][0]
    assert all(sub in m for m in p["annotation_error"]["first"]) and f"{tmp_path / 'X' / 'MSRVTT_data.json'}" in p["annotation_error"]["first"][0]
    (tmp_path / "X" / "msrvtt").mkdir()                      # the subfolder exists: that is the one place looked
    p = check_dataset("msrvtt", tmp_path / "X", decode=False)["problems"]
    assert f"{tmp_path / 'X' / 'msrvtt' / 'videos'}" in p["missing_folder"]["first"][0] and "does not exist" not in p["missing_folder"]["first"][0]


def test_data_check_synthetic_says_there_are_no_files_to_check(capsys):
    "The synthetic benchmarks are made in memory: the check says so, whatever --root, instead of 'ok: no problems found'."
    for name in ("synthetic", "synthetic_long"):
        assert data_check(name, root="/nonexistent", no_decode=True) == 0
        out = capsys.readouterr().out
        assert "generated in memory" in out and "no files to check" in out and "no problems found" not in out


def test_data_check_without_videos_still_checks_the_annotations(tmp_path):
    """No videos/ folder: said once, and the annotation files are still read (it used to stop at the folder, split by split);
    a missing annotation file that exists elsewhere under the root is pointed to."""
    root = tmp_path / "didemo"; root.mkdir()
    good = {"video": "c0.mp4", "description": "a dog", "times": [[0, 1]]}
    (root / "train_data.json").write_text(json.dumps([good, {"video": "c1.mp4"}]))   # row 1 lacks its description
    (root / "old").mkdir(); (root / "old" / "test_data.json").write_text(json.dumps([good]))
    rep = check_dataset("didemo", root, ("train", "test"), decode=False)
    p = rep["problems"]
    assert p["missing_folder"]["count"] == 1 and "videos folder not found" in p["missing_folder"]["first"][0]
    assert p["malformed_row"]["count"] == 1 and p["malformed_row"]["first"][0].startswith(f"[train] {root / 'train_data.json'} [1]")
    assert "missing_video" not in p                                   # not one per row: the folder is what is missing
    (err,) = p["annotation_error"]["first"]
    assert err.startswith(f"[test] annotation file not found: {root / 'test_data.json'}") and str(root / "old" / "test_data.json") in err


def test_data_check_says_how_each_split_was_made(tmp_path, clip_file):
    "The fallbacks the files alone do not show: a val carved from train, and where the answer vocabulary comes from."
    root = msrvtt_root(tmp_path, clip_file)   # MSR-VTT has no val file: val is carved from the 9k train videos
    rep = check_dataset("msrvtt", root, decode=False)
    assert rep["problems"] == {} and set(rep["notes"]) == {"train", "val"}          # test is the JSFusion file itself
    assert rep["notes"]["val"] == ["the 1k-A protocol has no val split: val is 10% of the train videos, drawn with data.seed=0, and train is the rest"]
    out = io.StringIO()
    with redirect_stdout(out): data_check("msrvtt", str(root), no_decode=True, seed=2, val_fraction=0.25)   # the run's carve
    assert "[val] the 1k-A protocol has no val split: val is 25% of the train videos, drawn with data.seed=2" in out.getvalue()
    qa = qa_root(tmp_path, clip_file)          # a val file and train_ans2label.json: nothing carved, the vocabulary file named
    rep = check_dataset("msrvtt_qa", qa, decode=False)
    voc = "answer vocabulary: train_ans2label.json (3 answers); "
    assert rep["notes"] == {"train": [voc + "answers outside it get no loss"],            # label -1: ignored by the loss
                            "val": [voc + "answers outside it count as wrong"], "test": [voc + "answers outside it count as wrong"]}
    assert VideoQA(qa, "train", drop_oov=True, **KW).notes == [voc + "rows whose answer is outside it are dropped (drop_oov)"]
    (qa / "qa" / "train_ans2label.json").unlink(); (qa / "qa" / "val.jsonl").unlink()
    ds = VideoQA(qa, "val", **KW)
    assert ds.summary()["notes"] == ["answer vocabulary: the 2 most frequent answers of the train file (the carved val's "
                                     "included), as there is no train_ans2label.json; answers outside it count as wrong",
                                     "no val file: val is 10% of the train videos (with all their questions), drawn with "
                                     "data.seed=0, and train is the rest"]
    (qa / "qa" / "train_ans2label.json").write_text(json.dumps({"dog": 0, "man": 1}))
    (qa / "qa" / "train.jsonl").rename(qa / "qa" / "train.moved")   # val is carved from the train file, and says so
    with pytest.raises(FileNotFoundError, match="there is no val file, so val is carved from the train file"):
        VideoQA(qa, "val", **KW)
    (qa / "qa" / "train_ans2label.json").unlink()   # the test split needs the train file for its vocabulary, and says why
    with pytest.raises(FileNotFoundError, match="the test split too takes its answer vocabulary from the train answers"):
        VideoQA(qa, "test", **KW)


def test_augmentation_depends_on_the_run_seed(tmp_path, clip_file):
    """RandAugment draws follow (data.seed, train.seed, epoch): runs that differ only in train.seed augment differently
    (they used to share every draw); the trainer's loader passes train.seed."""
    from hbi_repro.train import train_loader
    ds = MSRVTTRetrieval(msrvtt_root(tmp_path, clip_file), "train", augment=True, **KW)
    def frames(epoch, seed):
        ds.set_epoch(epoch, seed=seed); return ds[0]["video"]
    a = frames(0, 0)
    assert torch.equal(a, frames(0, 0))                                  # deterministic
    assert not torch.equal(a, frames(0, 1)) and not torch.equal(a, frames(1, 0))
    cfg = override(get_config("smoke"), {"train.seed": 5, "train.batch_size": 2})
    train_loader(ds, cfg, epoch=3)
    assert (ds.epoch, ds.run_seed) == (3, 5)


def test_qa_video_ids_and_questions_of_the_wrong_type_are_malformed_rows(tmp_path, clip_file):
    """A null or list QA video id used to become the text 'None' and fail later as a missing video; a list question was
    counted as a bad caption. Both are malformed rows now, in every QA format; an integer video id is its string form."""
    root = qa_root(tmp_path, clip_file)
    row = lambda v, q="who talks?": json.dumps({"answer": "man", "question": q, "video_id": v, "answer_type": "who"})
    for bad, what in ((None, "null"), (["video3"], "a list"), ({"id": 3}, "an object"), (True, "a boolean")):
        (root / "qa" / "test.jsonl").write_text(row("video3") + "\n" + row(bad) + "\n")
        with pytest.raises(AnnotationError, match=r"test.jsonl:2: video id is not a string or an integer: " + what): VideoQA(root, "test", **KW)
    (root / "qa" / "test.jsonl").write_text(row("video3") + "\n" + row("video3", None) + "\n")
    with pytest.raises(AnnotationError, match=r"test.jsonl:2: question is not a string: null"): VideoQA(root, "test", **KW)
    with open(root / "qa" / "train.jsonl", "a") as f: f.write("\n" + row(None) + "\n" + row("video0", 7))
    ds = VideoQA(root, "train", on_error="skip", **KW)
    assert ds.stats["skipped_malformed_row"] == 2 and "skipped_missing_video" not in ds.stats and "skipped_bad_caption" not in ds.stats
    rep = check_dataset("msrvtt_qa", root, ("train", "test"), decode=False)
    assert rep["problems"]["malformed_row"]["count"] == 3 and set(rep["problems"]) == {"malformed_row"}
    # MSVD-QA *_qa.json: integer ids are vid<N>; anything else that is not a string is malformed
    root = qa_root(tmp_path, clip_file, "msvd")
    (root / "qa" / "test.jsonl").unlink()
    (root / "qa" / "test_qa.json").write_text(json.dumps([{"question": "who?", "answer": "man", "video_id": "video3"},
                                                          {"question": "who?", "answer": "man", "video_id": None}]))
    with pytest.raises(AnnotationError, match=r"test_qa.json \[1\]: video id is not a string or an integer: null"): MSVDQA(root, "test", **KW)
    # ActivityNet-QA: video_name and question
    root = tmp_path / "activitynet"
    put_videos(root / "videos", ["v_abc.mp4"], clip_file); (root / "qa").mkdir()
    (root / "qa" / "test_a.json").write_text(json.dumps([{"answer": "no", "type": 3, "question_id": f"q{k}"} for k in range(2)]))
    (root / "qa" / "train_ans2label.json").write_text(json.dumps({"no": 0}))
    for q1, msg in (({"video_name": None, "question": "is it?"}, "video id is not a string or an integer: null"),
                    ({"video_name": "abc", "question": 5}, r"question is not a string: a number \(5\)")):
        (root / "qa" / "test_q.json").write_text(json.dumps([{"video_name": "abc", "question": "is it?", "question_id": "q0"},
                                                             {**q1, "question_id": "q1"}]))
        with pytest.raises(AnnotationError, match=r"test_q.json \[1\]: " + msg): ActivityNetQA(root, "test", **KW)


def test_a_video_listed_twice_in_the_1k_a_test_file_is_an_error(tmp_path, clip_file):
    "The 1k-A test pairs each video with one sentence: a repeated row used to add a second query and gallery entry."
    root = msrvtt_root(tmp_path, clip_file)
    write_csv(root / "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id", "sentence"],
              [["ret0", "msr4", "video4", "a caption"], ["ret1", "msr5", "video5", "b caption"], ["ret2", "msr4", "video4", "c caption"]])
    for cls in (MSRVTTRetrieval, MSRVTTCaption):
        with pytest.raises(AnnotationError, match=r"MSRVTT_JSFUSION_test.csv row 4: video 'video4' is already listed at row 2"):
            cls(root, "test", **KW)
    rep = check_dataset("msrvtt", root, ("test",), decode=False)
    assert rep["problems"]["duplicate_video"]["count"] == 1 and rep["items"]["test"] == 2
    write_csv(root / "MSRVTT_train.9k.csv", ["video_id"], [["video0"], ["video1"], ["video0"]])   # a training list may repeat
    assert {r["video_id"] for r in MSRVTTRetrieval(root, "trainval", **KW).records} == {"video0", "video1"}


def test_an_empty_reference_caption_is_a_bad_caption(tmp_path, clip_file):
    "Only a test video's first caption is tokenized; an empty one among the rest used to reach the CIDEr references."
    root = msrvtt_root(tmp_path, clip_file)
    data = json.loads((root / "MSRVTT_data.json").read_text())
    data["sentences"][13]["caption"] = "  "                   # video4's second caption: a reference only
    (root / "MSRVTT_data.json").write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"MSRVTT_data.json sentences\[13\]: empty caption of 'video4'"):
        MSRVTTCaption(root, "test", **KW)
    rep = check_dataset("msrvtt_caption", root, ("test",), decode=False)
    assert rep["problems"]["bad_caption"]["count"] == 1
    assert "" not in [c.strip() for refs in MSRVTTCaption(root, "val", on_error="skip", **KW).references.values() for c in refs]


def test_a_carved_val_does_not_count_the_videos_train_s_list_leaves_out(tmp_path, clip_file):
    "`data check` listed train's `excluded_by_list` a second time under the val carved from train."
    root = tmp_path / "activitynet"
    put_videos(root / "videos", [f"v_a{i}.mp4" for i in range(6)], clip_file)
    ann = lambda ids: {f"v_a{i}": {"duration": 3.0, "timestamps": [[0, 1]], "sentences": [f"thing {i}."]} for i in ids}
    (root / "train.json").write_text(json.dumps(ann(range(4))))
    (root / "train_ids.json").write_text(json.dumps([f"v_a{i}" for i in range(3)]))   # v_a3 left out
    (root / "val_1.json").write_text(json.dumps(ann((4, 5))))
    rep = check_dataset("activitynet", root, decode=False)
    assert rep["excluded_by_list"] == {"train": 1} and rep["items"]["val"] == 1
    root = tmp_path / "didemo"
    put_videos(root / "videos", [f"c{i}.mp4" for i in range(6)], clip_file)
    rows = lambda ids: [{"video": f"c{i}.mp4", "description": f"d {i}", "times": [[0, 1]]} for i in ids]
    (root / "train_data.json").write_text(json.dumps(rows(range(4))))
    (root / "test_data.json").write_text(json.dumps(rows((4, 5))))
    (root / "train_list.txt").write_text("c0.mp4\nc1.mp4\nc2.mp4\n")                  # c3 left out; no val file: val is carved
    rep = check_dataset("didemo", root, decode=False)
    assert rep["excluded_by_list"] == {"train": 1} and rep["items"]["val"] == 1


def test_a_data_root_that_does_not_exist_is_named_and_gets_no_frame_cache(tmp_path, monkeypatch):
    "A mistyped data.root used to get a `.frame_cache` folder created in it, and the error named <root>/videos."
    monkeypatch.chdir(tmp_path); monkeypatch.delenv("HBI_REPRO_FRAME_CACHE", raising=False)
    cfg = override(get_config("paper"), {"data.root": "dta"})
    with pytest.raises(FileNotFoundError, match=r"data.root 'dta' does not exist .*holds msrvtt/"): build_dataset(cfg, "train")
    assert not (tmp_path / "dta").exists()
    (tmp_path / "d").mkdir()                                 # the root exists but holds no dataset: the videos folder is named
    with pytest.raises(FileNotFoundError, match=r"videos folder not found"):
        build_dataset(override(get_config("paper"), {"data.root": "d"}), "train")
    assert list((tmp_path / "d").iterdir()) == []            # and no cache folder was made in it


def test_data_check_reports_what_the_run_will_record(tmp_path, clip_file, capsys):
    "Videos per split, answers outside the vocabulary and cut texts: a run records them, and data check was silent on them."
    qa = qa_root(tmp_path, clip_file)               # test: two questions on video3, 'zebra' is not in train_ans2label.json
    rep = check_dataset("msrvtt_qa", qa, decode=False)
    assert rep["counts"]["test"] == {"videos": 1, "oov": 1} and rep["counts"]["train"] == {"videos": 2}
    root = msrvtt_root(tmp_path, clip_file)
    write_csv(root / "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id", "sentence"],
              [["ret0", "msr4", "video4", "word " * 40], ["ret1", "msr5", "video5", "short"]])
    data_check("msrvtt", str(root), no_decode=True)
    out = capsys.readouterr().out
    assert "[test] 2 videos, 1 texts cut to data.max_words" in out and "[train] 3 videos" in out and "[val] 1 videos" in out
