
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
