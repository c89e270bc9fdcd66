"""The papers' own numbers that the board sets beside ours, transcribed from ``../shared/papers/*.txt``.

Only numbers that can be read in those texts are here, each with its table. A number is shown
beside ours only where the paper used the same prior (or, for a detector, the same method) on the
same dataset; :data:`WITHOUT_COMPARISON` says, per paper, why nothing else is comparable.

Checked and left out:

* LPS (Zeng et al., CVPR 2018), Table 2 (deep priors) and Table 3 (classical priors) report ECSSD,
  HKU-IS, PASCAL-S, DUTS-Test and SOD; of their priors only Amulet, DSS and BSCA have maps here, and
  only on SOD. Their "F-measure" is the adaptive one (threshold twice the map mean, Sec. 4.2), all
  with T = 1 (Sec. 4.5, note 3).
* LDPS (Chen et al.) Tables 1-3 report ECSSD, DUT-O, HKU-IS and Pascal-S with published priors (MB+,
  BSCA, wCtrO, Amulet, UCF, ELD, NLDF, SRM, PiCANet, RAS, R3Net, PFA) of which no ECSSD map is here,
  and no SOD.
* MIJR (Ma et al.) Tables II and III (max F, MAE, AUC on five datasets, SOD and ECSSD among them, DSS
  among the priors) have only their captions in the text: their bodies are missing, so no number
  is transcribed.
* ARN, Table 1, ECSSD: the detector's own numbers (VGG16 fine-tuned on 9.5k
  MSRA10K + DUT-OMRON images; all 1000 ECSSD images, ours the 500 of the test split).
* GradSal reports Pascal VOC 2012 and MSRA10k only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperNumber:
    """One row of a paper's table that the board can set beside its own cell.

    Attributes
    ----------
    paper, table : str
        Who reported it and where (``"LPS (Zeng et al., CVPR 2018)"``, ``"Table 2"``).
    dataset : str
        The board's dataset name (``"SOD"``).
    row : str
        The board's row: a published prior's folder name, or a detector stage.
    column : str
        ``"raw"`` for a detector's own numbers, else the promoter stage (``"lps"``).
    metrics : tuple of str
        The metric keys the paper gives (:mod:`pipeline.evaluation.metrics` keys).
    prior : tuple of float or None
        The paper's numbers for the raw prior, in the order of ``metrics`` (None: not given).
    value : tuple of float
        The paper's numbers for ``column`` (the promoted maps, or the detector's own).
    note : str
        What differs from our setting.
    """

    paper: str
    table: str
    dataset: str
    row: str
    column: str
    metrics: tuple[str, ...]
    prior: tuple[float, ...] | None
    value: tuple[float, ...]
    note: str = ""


LPS = "LPS (Zeng et al., CVPR 2018)"
ARN = "ARN (attentional recurrent network)"

PAPER_NUMBERS: tuple[PaperNumber, ...] = (
    # LPS Table 2, SOD column, rows "BS" and "Ours" (F-measure at twice the mean, MAE).
    PaperNumber(LPS, "Table 2", "SOD", "Amulet", "lps", ("adp_f", "mae"), (0.7546, 0.1407), (0.7769, 0.1336),
                "LPS with a VGG16 backbone trained on DUTS-TR (10k images), T = 1"),
    PaperNumber(LPS, "Table 2", "SOD", "DSS", "lps", ("adp_f", "mae"), (0.7867, 0.1262), (0.8061, 0.1187),
                "LPS with a VGG16 backbone trained on DUTS-TR (10k images), T = 1"),
    # LPS Table 3 (conventional priors), SOD column, BSCA.
    PaperNumber(LPS, "Table 3", "SOD", "BSCA", "lps", ("adp_f", "mae"), (0.5835, 0.2516), (0.6634, 0.2001),
                "the BSCA maps here are unofficial (their baseline differs from the paper's)"),
    # ARN Table 1, ECSSD: MAE 0.0637, F-measure 0.9133 (the maximum F, Fig. 6).
    PaperNumber(ARN, "Table 1", "ECSSD", "arn", "raw", ("max_f", "mae"), None, (0.9133, 0.0637),
                "VGG16 fine-tuned on 9.5k MSRA10K + DUT-OMRON images, all 1000 ECSSD images; "
                "ours: frozen EfficientNet-Lite0 taps, the images of ECSSD's test split"),
)

WITHOUT_COMPARISON: tuple[tuple[str, str], ...] = (
    ("LDPS (Chen et al., learning deep relations)",
     "Tables 1-3 report ECSSD, DUT-O, HKU-IS and Pascal-S with published priors (MB+, BSCA, wCtrO, "
     "Amulet, UCF, ELD, NLDF, SRM, PiCANet, RAS, R3Net, PFA; DenseCRF against UCF, ELD, NLDF in "
     "Table 3): no map of those priors on ECSSD is in the data, and SOD is not reported. "
     "No comparable number."),
    ("MIJR (Ma et al., multiple instance joint re-learning)",
     "Tables II and III (max F, MAE, AUC on DUTS-TE, ECSSD, HKU-IS, PASCAL-S, SOD; DSS among the "
     "priors) have only their captions in the paper text, their bodies are missing: no number "
     "can be read, none is transcribed."),
    ("GradSal (DCNN gradient-descent saliency)",
     "Reports Pascal VOC 2012 and MSRA10k only. No comparable number."),
)


def numbers_for(dataset: str) -> list[PaperNumber]:
    """The paper numbers on ``dataset`` (the board's dataset name)."""
    return [p for p in PAPER_NUMBERS if p.dataset == dataset]
