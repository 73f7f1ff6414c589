from wattlab.core.results import FAIRNESS_METRICS

# One colour per verdict, for the PDF table and the app's results table alike.
VERDICT_COLOURS = {
    "better": "#c8f0c8",
    "worse": "#f6c6c6",
    "inconclusive": "#fdf1c7",
    "no meaningful change": "#e8eef7",
    "within noise": "#eeeeee",
    "too few repeats": "#eeeeee",
    "no change": "#f7f7f7",
}

A4 = (8.27, 11.69)  # inches, matplotlib's figure size for a portrait A4 page
BASE_C, OPT_C = "#4c72b0", "#dd8452"  # baseline and optimized, the same in every chart
# Quality figures shown in points, not percent: fractions whose change people read as "lost 1
# point" (the fairness figures too: a parity gap going 0.03 -> 0.05 is +2 points, not +67%).
# They are also the figures an untrained head makes meaningless.
POINT_METRICS = ("accuracy", "macro_f1", *FAIRNESS_METRICS)
