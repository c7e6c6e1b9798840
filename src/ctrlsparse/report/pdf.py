"""Assemble ``results/report.pdf`` with reportlab: title page (config, versions), figures with captions, the
tables as real (searchable) text, and the paper's reference numbers beside ours.

``ctrlsparse report --tables results/tables --plots results/plots --config results/config.yaml --out results/report.pdf``
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
from pathlib import Path
from typing import Any

from ctrlsparse.report import aggregate, paper
from ctrlsparse.report.plots import FIGURES, load_tables

SECTIONS = [
    ("control", "Control: achieved vs target density"),
    ("accuracy", "Accuracy vs density"),
    ("penalty", "The penalized baseline: λ vs density"),
    ("layers", "Per-layer densities"),
    ("dynamics", "Training dynamics"),
]
CONTROL_COLUMNS = [
    "data / arch",
    "scope",
    "target",
    "seeds",
    "expected density",
    "eval density",
    "max violation",
    "feasible",
    "acc. %",
]


def _fonts() -> tuple[str, str]:
    """Register DejaVu (shipped with matplotlib) so ε, λ and ± render; fall back to Helvetica/Courier."""
    try:
        import matplotlib
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        for name, file in (
            ("DejaVu", "DejaVuSans.ttf"),
            ("DejaVu-Bold", "DejaVuSans-Bold.ttf"),
            ("DejaVuMono", "DejaVuSansMono.ttf"),
        ):
            pdfmetrics.registerFont(TTFont(name, str(ttf / file)))
        pdfmetrics.registerFontFamily("DejaVu", normal="DejaVu", bold="DejaVu-Bold")
        return "DejaVu", "DejaVuMono"
    except Exception:
        return "Helvetica", "Courier"


class Builder:
    """Collects reportlab flowables; one method per kind of block."""

    def __init__(self) -> None:
        from reportlab.lib.pagesizes import A4
        from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
        from reportlab.lib.units import cm

        self.font, self.mono_font = _fonts()
        styles = getSampleStyleSheet()
        bold = "DejaVu-Bold" if self.font == "DejaVu" else "Helvetica-Bold"
        self.styles = {
            name: ParagraphStyle(
                name, parent=styles[parent], fontName=bold if name in ("title", "h") else self.font, **extra
            )
            for name, parent, extra in [
                ("title", "Title", {"fontSize": 22, "leading": 28}),
                ("h", "Heading2", {}),
                ("body", "BodyText", {"fontSize": 9.5, "leading": 13}),
                ("caption", "BodyText", {"fontSize": 8.5, "leading": 11, "textColor": "#333333"}),
                ("cell", "BodyText", {"fontSize": 7.5, "leading": 9}),
            ]
        }
        self.mono_style = ParagraphStyle(
            "mono", parent=styles["Code"], fontName=self.mono_font, fontSize=7, leading=8.5
        )
        self.width = A4[0] - 3.6 * cm
        self.height = A4[1] - 3.6 * cm
        self.story: list[Any] = []

    def heading(self, text: str) -> None:
        from reportlab.platypus import Paragraph

        self.story.append(Paragraph(text, self.styles["h"]))

    def para(self, text: str, style: str = "body") -> None:
        from reportlab.platypus import Paragraph

        self.story.append(Paragraph(text, self.styles[style]))

    def space(self, height: float = 6) -> None:
        from reportlab.platypus import Spacer

        self.story.append(Spacer(1, height))

    def mono(self, text: str) -> None:
        from reportlab.platypus import XPreformatted

        self.story.append(XPreformatted(_escape(text), self.mono_style))

    def table(self, header: list[str], rows: list[list[str]], widths: list[float] | None = None) -> None:
        """A real-text table that repeats its header on each page; cells wrap instead of being cut."""
        from reportlab.lib import colors
        from reportlab.platypus import Paragraph, Table, TableStyle

        cell = self.styles["cell"]
        data = [[Paragraph(f"<b>{_escape(h)}</b>", cell) for h in header]]
        data += [[Paragraph(_escape(str(value)), cell) for value in row] for row in rows]
        if widths is not None:
            widths = [self.width * w / sum(widths) for w in widths]
        table = Table(data, colWidths=widths, repeatRows=1, hAlign="LEFT")
        table.setStyle(
            TableStyle(
                [
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
                    ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
                    ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f7f7f7")]),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                ]
            )
        )
        self.story.append(table)

    def figure(self, path: Path, caption: str, heading: str | None = None) -> None:
        """A PNG scaled to the text width (at most 70% of the page height), then its caption; kept on one page
        with its heading."""
        from reportlab.lib.utils import ImageReader
        from reportlab.platypus import Image, KeepTogether, Paragraph, Spacer

        width, height = ImageReader(str(path)).getSize()
        scale = min(self.width / width, 0.7 * self.height / height)
        self.story.append(
            KeepTogether(
                [
                    *([Paragraph(heading, self.styles["h"])] if heading else []),
                    Image(str(path), width=width * scale, height=height * scale),
                    Spacer(1, 3),
                    Paragraph(caption, self.styles["caption"]),
                    Spacer(1, 8),
                ]
            )
        )

    def page_break(self) -> None:
        from reportlab.platypus import PageBreak

        self.story.append(PageBreak())

    def build(self, out: Path, title: str) -> None:
        from reportlab.lib.pagesizes import A4
        from reportlab.lib.units import cm
        from reportlab.platypus import SimpleDocTemplate

        def footer(canvas: Any, doc: Any) -> None:
            canvas.setFont(self.font, 7.5)
            canvas.drawString(1.8 * cm, 1.0 * cm, title)
            canvas.drawRightString(A4[0] - 1.8 * cm, 1.0 * cm, f"page {doc.page}")

        doc = SimpleDocTemplate(
            str(out),
            pagesize=A4,
            leftMargin=1.8 * cm,
            rightMargin=1.8 * cm,
            topMargin=1.8 * cm,
            bottomMargin=1.8 * cm,
            title=title,
            author="ctrlsparse",
        )
        doc.build(self.story, onFirstPage=footer, onLaterPages=footer)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _versions(runs: Any) -> list[list[str]]:
    rows = [["python", platform.python_version()], ["platform", platform.platform(terse=True)]]
    for column in (c for c in runs.columns if c.startswith("version_")):
        values = sorted({str(v) for v in runs[column].dropna()})
        rows.append([column.removeprefix("version_"), ", ".join(values)])
    try:
        from ctrlsparse.tracking import git_commit

        rows.append(["git commit", git_commit() or "unknown"])
    except Exception:
        pass
    return rows


def control_rows(settings: Any) -> list[list[str]]:
    fmt = aggregate.fmt
    rows = []
    for _, r in settings[settings["method"] == "constrained"].iterrows():
        ci = r["expected_density_ci95"]
        density = fmt(r["expected_density_mean"]) + (f" ± {ci:.3f}" if ci == ci else "")
        acc = fmt(r["test_accuracy_mean"], percent=True)
        feasible = f"{int(r['satisfied'])}/{int(r['seeds'])}" if r["satisfied"] == r["satisfied"] else "—"
        rows.append(
            [
                f"{r['dataset']} / {r['arch']}",
                r["target_scope"],
                str(r["target"]),
                str(int(r["seeds"])),
                density,
                fmt(r["eval_density_mean"]),
                fmt(r["max_violation_mean"], 4),
                feasible,
                acc,
            ]
        )
    return rows


def build_report(
    tables_dir: Path,
    plots_dir: Path,
    out: Path,
    *,
    config_text: str,
    paper_csv: Path | None,
    captions_dir: Path | None,
    title: str,
) -> Path:
    tables = load_tables(tables_dir)
    runs, settings = tables["runs"], tables["settings"]
    b = Builder()
    b.para(_escape(title), "title")
    b.para(
        "Controlled Sparsity via Constrained Optimization (Gallego-Posada et al., NeurIPS 2022), reproduced "
        "with <b>ctrlsparse</b>: hard-concrete L0 gates trained under an explicit density constraint, "
        "beside the penalized and dense baselines."
    )
    datasets = ", ".join(sorted(set(runs["dataset"]))) if not runs.empty else "—"
    b.para(
        f"{len(runs)} runs, {len(settings)} settings; data: {datasets}. "
        f"Built {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC."
    )
    b.space()
    b.heading("Versions")
    b.table(["component", "version"], _versions(runs) if not runs.empty else [], widths=[1, 4])
    b.heading("Configuration")
    b.mono(config_text)
    b.page_break()

    captions = {name: _caption(captions_dir, name) for name in FIGURES}
    for index, (name, heading) in enumerate(SECTIONS, start=1):
        b.figure(
            plots_dir / FIGURES[name][1],
            f"<b>Figure {index}.</b> {_escape(captions[name])}",
            heading=f"{index}. {heading}",
        )
        if name == "control" and not settings.empty and (settings["method"] == "constrained").any():
            b.para(
                "Constrained settings (mean over seeds of the last epoch; ± = 95% CI half-width; feasible = "
                f"seeds whose final violation is at most {aggregate.FEASIBILITY_TOL}).",
                "caption",
            )
            b.table(CONTROL_COLUMNS, control_rows(settings), widths=[2.2, 1, 1.5, 0.9, 2.2, 1.3, 1.4, 1.3, 1.1])
            b.space(10)

    b.page_break()
    b.heading(f"{len(SECTIONS) + 1}. All settings")
    b.para(
        "Mean over seeds of the last epoch; ± is the 95% CI half-width. The same numbers are in "
        "tables/settings.csv (per setting), tables/runs.csv (per run) and tables/layers.csv (per layer).",
        "caption",
    )
    if not settings.empty:
        for (dataset, arch), part in settings.groupby(["dataset", "arch"], sort=False):
            b.para(f"<b>{dataset} / {arch}</b>")
            b.table(aggregate.MD_COLUMNS, aggregate.settings_rows(part), widths=[3, 0.8, 1, 2, 1.3, 1.7, 1])
            b.space(8)

    b.heading(f"{len(SECTIONS) + 2}. The paper's numbers beside ours")
    if paper_csv is not None and paper_csv.exists():
        rows, exact = paper.reference_rows(paper.load_paper(paper_csv), settings)
        if exact:
            b.para(
                f"{exact} of the paper's reported settings match this grid exactly (same data, architecture, "
                "variant and level); they are listed with our numbers.",
                "caption",
            )
        else:
            b.para(
                "No setting of this grid matches one of the paper's exactly: the paper ran MNIST, CIFAR, "
                "TinyImageNet and ImageNet, this grid runs " + datasets + ". For reference, the paper's MNIST "
                "tables and its CIFAR-10 and TinyImageNet control sweeps are shown beside our runs of the same "
                "variant and level on our data (analogues, not replications: compare how close each lands "
                "to its target, not the errors).",
                "caption",
            )
        b.table(paper.REFERENCE_COLUMNS, rows, widths=[2, 3.2, 1.1, 1.3, 2.4, 1.1, 1.1])
    else:
        b.para("No paper reference file given.", "caption")
    out.parent.mkdir(parents=True, exist_ok=True)
    b.build(out, title)
    return out


def _caption(captions_dir: Path | None, name: str) -> str:
    path = captions_dir / f"{name}.rst" if captions_dir else None
    return " ".join(path.read_text().split()) if path and path.exists() else FIGURES[name][0].__doc__ or name


def main(argv: list[str]) -> int:
    """``ctrlsparse report``: the PDF report from the tables and figures."""
    parser = argparse.ArgumentParser(prog="ctrlsparse report", description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default="results/tables", help="directory written by ctrlsparse aggregate")
    parser.add_argument("--plots", default="results/plots", help="directory written by ctrlsparse plots")
    parser.add_argument("--config", help="the workflow's resolved config (YAML), shown on the title page")
    parser.add_argument("--paper", default="report/paper_results.csv", help="the paper's reference numbers (CSV)")
    parser.add_argument("--captions", default="report/captions", help="directory of <figure>.rst captions")
    parser.add_argument("--title", default="ctrlsparse report", help="title of the report")
    parser.add_argument("--out", default="results/report.pdf", help="the PDF to write")
    args = parser.parse_args(argv)
    config_text = Path(args.config).read_text() if args.config else "(no config given)"
    out = build_report(
        Path(args.tables),
        Path(args.plots),
        Path(args.out),
        config_text=config_text,
        paper_csv=Path(args.paper),
        captions_dir=Path(args.captions),
        title=args.title,
    )
    print(f"wrote {out}")
    return 0
