"""LDPS against the dense-CRF baseline: priors before and after promotion on SOD and ECSSD test.

For each prior of a dataset (SOD: the six published maps in ``../shared/data/sod/SOD/priors``;
ECSSD test: the project's u2netp, contrast and gradsal maps), the rows are:

* the prior itself;
* ``+crf``: :func:`promote.dense_crf` with the ``crf`` stage's defaults (the baseline);
* ``+ldps (pool)``: the paper's mode: :func:`promote.train_relation_network` trained self-supervised
  on the very images and priors it then refines (no ground truth), with the ``ldps_fit`` defaults;
* ``+ldps (shipped)``: a model shipped in the package (``--model``, default ``ldps-u2netp-duts``: trained on
  DUTS-TR images with u2netp priors), on the feature stage it was trained on, unless ``--no-shipped``;
* ``+ldps_single``: :func:`promote.ldps_single`, a fresh network fitted on each image alone;
* with ``--fusion``, ``mean with u2netp``: the prior averaged with U^2-Net-small's map, the baseline
  for features that come from that network (``--features u2netp_features``).

Scores: max F, adaptive F, MAE, S-measure (pysodmetrics, GT at 128) and seconds per image. The
backbone taps of the pool and single-image rows are those of the feature stage ``--features`` with
its defaults (the default ``u2netp_features``: U^2-Net-small's decoder at 320; ``deep_features``:
EfficientNet-Lite0 at 224), computed by the stage's own function.
``--no-crf`` leaves out the dense-CRF rows (they do not depend on the features). A second table gives
the inference speed of the promotion at 256 x 256 (taps at 256, so the fused grid is 128 x 128),
batch 1 and batch 8, head only (taps given) and with the backbone.

ECSSD test priors are read from ``--ecssd-maps DIR/<stage>/<stem>.png`` (the output folder of
``python -m pipeline run --stages u2netp,contrast,gradsal --pool ECSSD-test-images``); without it
u2netp and contrast are computed here and gradsal is left out.

``ldps_single`` fits a network per image, so it is scored on a fixed random subset of each dataset
(``--single-n``, seed 0), beside the prior and crf scores of the same images.

Usage::

    .venv/bin/python benchmarks/bench_ldps.py [--datasets SOD ECSSD] [--ecssd-maps DIR] [--threads 2]

Writes ``benchmarks/results/ldps.{json,md}`` (``--results NAME``: ``NAME.{json,md}``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    dataset_dir,
    feature_layout,
    gt_path,
    image_path,
    load_average,
    read_map,
    read_mask,
    read_rgb,
    sod_scores,
    split_stems,
    taps_reader,
    write_results,
)

from pipeline.registry import FEATURE_STAGES  # noqa: E402
from pipeline.stages.ldps import LDPS_FEATURES, LdpsParams  # noqa: E402
from promote.merge import MERGES  # noqa: E402

DURATION = "~60 min on 2 cores (9 priors x crf, pool training, single-image fits)"

# LDPS (AAAI 2020) Table 1, ECSSD, PiCANet: adaptive F / MAE before and after.
PAPER_PICANET_ECSSD = ((0.8872, 0.0456), (0.9096, 0.0406))


def _taps(features, images, threads):
    """The feature stage's cached taps of every image, seconds per image, its input size and strides."""
    read = taps_reader(features, threads)
    t0 = time.perf_counter()
    out = [read(im) for im in images]
    seconds = (time.perf_counter() - t0) / max(len(images), 1)
    size, strides = feature_layout(features)
    return out, seconds, size, strides


def _priors(dataset, stems, images, gts, ecssd_maps):
    if dataset == "SOD":
        root = dataset_dir("SOD") / "priors"
        return {m: [read_map(root / m / f"{s}.png", g.shape) for s, g in zip(stems, gts)]
                for m in sorted(d.name for d in root.iterdir() if d.is_dir())}
    out = {}
    for method in ("u2netp", "contrast", "gradsal"):
        if ecssd_maps is not None and (Path(ecssd_maps) / method).is_dir():
            out[method] = [read_map(Path(ecssd_maps) / method / f"{s}.png", g.shape) for s, g in zip(stems, gts)]
        elif method == "u2netp":
            from detect.u2netp import u2netp_map

            out[method] = [u2netp_map(im) for im in images]
        elif method == "contrast":
            from detect.contrast import contrast_saliency

            out[method] = [contrast_saliency(im) for im in images]
    return out


def _timed(fn, items):
    t0 = time.perf_counter()
    out = [fn(*it) for it in items]
    return out, (time.perf_counter() - t0) / max(len(items), 1)


def _rows(method, res):
    """Markdown rows of one prior: each result with its change of adaptive F / MAE against the prior
    scored on the same images."""
    rows = []
    for key, e in res.items():
        base = res[key if key.startswith("prior") else
                   ("prior" if "images)" not in key else "prior " + key[key.index("("):])]
        label = f"{method}{key[5:]}" if key.startswith("prior") else f"{method} + {key}"
        if key.startswith("prior"):
            delta = ""
        else:
            d_f, d_m = e["adpF"] - base["adpF"], e["MAE"] - base["MAE"]
            delta = f"{d_f:+.3f} / {d_m:+.3f}" + (" (worse)" if d_m > 0 else "")
        sec = f"{e['s_per_image']:.3f}" if "s_per_image" in e else ""
        rows.append(f"| {label} | {e['maxF']:.3f} | {e['adpF']:.3f} | {e['MAE']:.3f} | {e['Sm']:.3f} | "
                    f"{delta} | {sec} |")
    return rows


def _speed(net, network, features, images, threads):
    """Images per second of LDPS inference at 256 x 256: head only and with the backbone's taps
    (``features``: ``deep_features``, EfficientNet-Lite0 ``net`` run at 256; ``u2netp_features``,
    U2-Netp, which resizes every image to its 320 x 320 input)."""
    import cv2
    import torch

    from backbones import extract_features
    from detect.u2netp import u2netp_features
    from promote.ldps import RelationNetwork, ldps_promote_batch

    torch.set_num_threads(threads)
    taps = network.hparams["taps"]
    if features == "u2netp_features":
        head = network

        def extract(batch_images):
            return u2netp_features(batch_images, taps=taps, threads=threads)
    else:
        hp = dict(network.hparams, input_size=256)
        head = RelationNetwork.create(taps=hp["taps"], tap_channels=hp["tap_channels"], tap_strides=hp["tap_strides"],
                                      channels=hp["channels"], hidden=hp["hidden"], input_size=256)
        head.module.load_state_dict(network.module.state_dict())  # a fully convolutional head: any input size

        def extract(batch_images):
            f = extract_features(net, batch_images, taps=taps, batch_size=len(batch_images), size=256)
            return [{t: f[t][i] for t in taps} for i in range(len(batch_images))]

    ims = [cv2.resize(im, (256, 256)) for im in images[:16]]
    priors = [np.clip(cv2.GaussianBlur(np.asarray(im[..., 0], np.float32) / 255.0, (0, 0), 8) * 1.6, 0, 1)
              for im in ims]
    rows = []
    for batch in (1, 8):
        best_head = best_all = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            feats = []
            for s in range(0, len(ims), batch):
                feats += extract(ims[s:s + batch])
            t1 = time.perf_counter()
            for s in range(0, len(ims), batch):
                ldps_promote_batch(feats[s:s + batch], priors[s:s + batch], head)
            t2 = time.perf_counter()
            best_head = min(best_head, (t2 - t1) / len(ims))
            best_all = min(best_all, (t2 - t0) / len(ims))
        rows.append({"batch": batch, "head_images_per_s": 1 / best_head, "with_backbone_images_per_s": 1 / best_all})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["SOD", "ECSSD"], choices=["SOD", "ECSSD"])
    ap.add_argument("--ecssd-maps", default=None, help="pipeline output folder with u2netp/contrast/gradsal maps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="only the first N images of each dataset (a smoke run)")
    ap.add_argument("--no-shipped", action="store_true", help="leave out the shipped model's rows")
    ap.add_argument("--model", default=LdpsParams().model, help="the shipped model (or model file) of the shipped rows")
    ap.add_argument("--features", default=LDPS_FEATURES, choices=FEATURE_STAGES,
                    help="the feature stage of the pool-mode and single-image rows")
    ap.add_argument("--fusion", action="store_true", help="add the rows of each prior averaged with u2netp's map")
    ap.add_argument("--no-crf", action="store_true", help="leave out the dense-CRF rows")
    ap.add_argument("--results", default=None, help="results file name (default: ldps, or ldps_shipped)")
    ap.add_argument("--speed-only", action="store_true",
                    help="only the speed table, with the shipped model (written to ldps_speed.{md,json})")
    ap.add_argument("--only-shipped", action="store_true",
                    help="only the prior and the shipped model's rows (written to ldps_shipped.{md,json})")
    ap.add_argument("--merges", nargs="+", choices=MERGES, default=None,
                    help="how the pool and shipped rows combine the discriminator's map with the prior; the first "
                         "is the rows' plain label, the others get ', RULE merge' (default: the stage's merge)")
    ap.add_argument("--single-n", type=int, default=60,
                    help="ldps_single (the slowest rows) on this many images per dataset, a fixed random subset "
                         "(seed 0), with the prior and crf rows of the same images beside it; 0: leave it out")
    args = ap.parse_args(argv)
    merges = args.merges or [LdpsParams().merge]

    def merged(label, rule):
        return label if rule == merges[0] else f"{label[:-1]}, {rule} merge)"

    import warnings

    import torch

    from backbones import load_backbone
    from pipeline import models
    from pipeline.registry import params_as_dict
    from pipeline.stages.features import DeepFeaturesParams
    from pipeline.stages.features import model_feature_stage
    from pipeline.stages.ldps import LdpsFitParams, LdpsSingleParams
    from pipeline.stages.promote import CrfParams
    from promote import dense_crf
    from promote.ldps import RelationNetwork, ldps_promote, ldps_single, resolve_taps, train_relation_network

    warnings.simplefilter("ignore")  # the "no confident foreground" notices are counted instead
    torch.set_num_threads(args.threads)
    fp = DeepFeaturesParams()
    backbone = load_backbone(fp.backbone, device="cpu")
    fit_kwargs = params_as_dict(LdpsFitParams())
    fit_kwargs.pop("prior")
    fit_kwargs.pop("features")
    taps = tuple(fit_kwargs.pop("taps"))
    single = params_as_dict(LdpsSingleParams())
    single.pop("prior")
    single.pop("features")
    crf_kwargs = params_as_dict(CrfParams())
    crf_kwargs.pop("prior")
    shipped, shipped_features = None, None
    if not args.no_shipped:
        ref = models.resolve("ldps", args.model)
        m = ref.load()
        shipped = RelationNetwork.from_state(m.arrays, m.hparams)
        shipped_features = model_feature_stage(m)

    if args.speed_only:
        images = [read_rgb(image_path("SOD", s)) for s in split_stems("SOD", "test")[:16]]
        before = load_average()
        speed = _speed(backbone, shipped, shipped_features, images, args.threads)
        lines = [f"# LDPS inference speed at 256 x 256 ({args.threads} threads, shipped model `{args.model}`, "
                 "16 SOD images, best of 3 rounds)", "", f"Load average before {before}, after {load_average()}.", "",
                 f"| batch | images/s, LDPS head on cached taps | images/s, with the `{shipped_features}` taps |",
                 "|---|---|---|",
                 *[f"| {r['batch']} | {r['head_images_per_s']:.1f} | {r['with_backbone_images_per_s']:.1f} |"
                   for r in speed], "",
                 f"Command: `.venv/bin/python benchmarks/bench_ldps.py --speed-only --model {args.model} "
                 f"--threads {args.threads}`", ""]
        write_results(args.results or "ldps_speed", {"speed_256": speed, "threads": args.threads, "load_before": before},
                      "\n".join(lines))
        return 0

    data = {"load_before": load_average(), "datasets": {}, "ldps_fit": fit_kwargs, "crf": crf_kwargs}
    md_tables = []
    for dataset in args.datasets:
        split = "test"
        stems = split_stems(dataset, split)
        if args.limit:
            stems = stems[:args.limit]
        gts = [read_mask(gt_path(dataset, s)) for s in stems]
        images = [read_rgb(image_path(dataset, s)) for s in stems]
        feats, feat_s, size, strides = _taps(args.features, images, args.threads)
        taps = resolve_taps(taps, list(strides))
        ship_feats = feats
        if shipped is not None and shipped_features != args.features:
            ship_feats = _taps(shipped_features, images, args.threads)[0]
        priors = _priors(dataset, stems, images, gts, args.ecssd_maps)
        u2 = None
        if args.fusion:
            from detect.u2netp import u2netp_map

            u2 = priors["u2netp"] if "u2netp" in priors else [u2netp_map(im) for im in images]
        entry = {"features_s_per_image": feat_s, "features": args.features, "taps": list(taps), "priors": {}}
        rows = []
        for method, pri in priors.items():
            res = {"prior": sod_scores(pri, gts, s_measure=True)}
            if u2 is not None and method != "u2netp":
                res["mean with u2netp"] = sod_scores([(p + q) / 2 for p, q in zip(pri, u2)], gts, s_measure=True)
            if args.only_shipped:
                for rule in merges:
                    out, s = _timed(lambda f, p: ldps_promote(f, p, shipped, merge=rule), list(zip(ship_feats, pri)))
                    res[merged("ldps (shipped)", rule)] = {**sod_scores(out, gts, s_measure=True), "s_per_image": s}
                entry["priors"][method] = res
                rows += _rows(method, res)
                print(dataset, method, res, flush=True)
                continue
            if not args.no_crf:
                crf, s = _timed(lambda im, p: dense_crf(im, p, **crf_kwargs), list(zip(images, pri)))
                res["crf"] = {**sod_scores(crf, gts, s_measure=True), "s_per_image": s}
            t0 = time.perf_counter()
            fit = train_relation_network(feats, pri, tap_strides=strides, taps=taps, input_size=size, **fit_kwargs)
            train_s = time.perf_counter() - t0
            n_fg = sum(int((p > fit.network.hparams["theta_fg"]).any()) for p in pri)
            for rule in merges:
                out, s = _timed(lambda f, p: ldps_promote(f, p, fit.network, merge=rule), list(zip(feats, pri)))
                res[merged("ldps (pool)", rule)] = {**sod_scores(out, gts, s_measure=True), "s_per_image": s,
                                                    "train_s": train_s, "trained_on": fit.images,
                                                    "no_fg": len(pri) - n_fg}
            if shipped is not None:
                for rule in merges:
                    out, s = _timed(lambda f, p: ldps_promote(f, p, shipped, merge=rule), list(zip(ship_feats, pri)))
                    res[merged("ldps (shipped)", rule)] = {**sod_scores(out, gts, s_measure=True), "s_per_image": s}
            if args.single_n:
                sub = np.sort(np.random.default_rng(0).choice(len(stems), min(args.single_n, len(stems)), replace=False))
                sub_gts = [gts[i] for i in sub]
                n = len(sub)
                res[f"prior ({n} images)"] = sod_scores([pri[i] for i in sub], sub_gts, s_measure=True)
                if not args.no_crf:
                    res[f"crf ({n} images)"] = sod_scores([crf[i] for i in sub], sub_gts, s_measure=True)
                out, s = _timed(lambda f, p: ldps_single(f, p, tap_strides=strides, taps=taps, input_size=size,
                                                         **{k: v for k, v in single.items() if k != "taps"}),
                                [(feats[i], pri[i]) for i in sub])
                res[f"ldps_single ({n} images)"] = {**sod_scores(out, sub_gts, s_measure=True), "s_per_image": s}
            entry["priors"][method] = res
            print(dataset, method, {k: {q: round(v, 4) for q, v in e.items()} for k, e in res.items()}, flush=True)
            rows += _rows(method, res)
        data["datasets"][dataset] = entry
        md_tables += [
            f"## {dataset} {split} ({len(stems)} images)",
            "",
            f"Backbone taps (`{args.features}`: {', '.join(taps)}) {feat_s:.3f} s per image (not included in the "
            "seconds column).",
            "",
            "| map | max F | adaptive F | MAE | S-measure | change of adaptive F / MAE | s per image |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    speed_net, speed_features = (shipped, shipped_features) if shipped is not None else (fit.network, args.features)
    speed = [] if args.only_shipped else _speed(backbone, speed_net, speed_features, images, args.threads)
    data["speed_256"] = speed
    data["load_after"] = load_average()
    lines = [
        "# LDPS: priors before and after promotion, against the dense-CRF baseline",
        "",
        f"Pool mode trains self-supervised on each dataset's own images and priors (the paper's protocol; "
        f"no ground truth is used), with the `ldps_fit` defaults on `{args.features}`; the pool and shipped rows "
        f"merge the discriminator's map with the prior by `{merges[0]}`"
        + (f" (rows marked otherwise: {', '.join(merges[1:])})" if len(merges) > 1 else "")
        + " (`confidence` is the paper's Eq. 10-11)"
        + (f"; the shipped rows: `{args.model}` on `{shipped_features}`" if shipped is not None else "")
        + f". CPU, {args.threads} torch threads; "
        f"load average before {data['load_before']}, after {data['load_after']} (a shared machine).",
        "",
        *md_tables,
        *([f"## Inference speed at 256 x 256 ({args.threads} threads)",
           "",
           f"| batch | images/s, LDPS head on cached taps | images/s, with the `{speed_features}` taps |",
           "|---|---|---|",
           *[f"| {r['batch']} | {r['head_images_per_s']:.1f} | {r['with_backbone_images_per_s']:.1f} |"
             for r in speed],
           ""] if speed else []),
        f"Command: `.venv/bin/python benchmarks/bench_ldps.py --datasets {' '.join(args.datasets)}"
        + (" --ecssd-maps ECSSD_TEST_RUN" if args.ecssd_maps else "") + f" --threads {args.threads}"
        + (" --no-shipped" if args.no_shipped else f" --model {args.model}")
        + (" --only-shipped" if args.only_shipped else "") + f" --features {args.features}"
        + (" --fusion" if args.fusion else "") + (" --no-crf" if args.no_crf else "")
        + (f" --merges {' '.join(args.merges)}" if args.merges else "")
        + f" --single-n {args.single_n}" + (f" --results {args.results}" if args.results else "") + "`",
        "",
    ]
    if args.only_shipped:
        lines[0] = f"# LDPS: the shipped model `{args.model}` on the priors of SOD and ECSSD test"
        lines[2] = (f"The model shipped in the package (trained self-supervised on DUTS-TR images with u2netp priors; "
                    f"its card: `pipeline/shipped_models/{args.model}.md`), on `{shipped_features}`. CPU, "
                    f"{args.threads} torch threads; load average before {data['load_before']}, after "
                    f"{data['load_after']}. Merge with the prior: `{merges[0]}`"
                    + (f" (rows marked otherwise: {', '.join(merges[1:])})" if len(merges) > 1 else "")
                    + " (`confidence` is the paper's Eq. 10-11).")
    write_results(args.results or ("ldps_shipped" if args.only_shipped else "ldps"), data, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
