"""Page layout of the PDF report with reportlab's platypus: headings, paragraphs, real-text tables, figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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

        self.story.append(XPreformatted(escape(text), self.mono_style))

    def table(self, header: list[str], rows: list[list[str]], widths: list[float] | None = None) -> None:
        """A real-text table that repeats its header on each page; cells wrap instead of being cut."""
        from reportlab.lib import colors
        from reportlab.platypus import Paragraph, Table, TableStyle

        cell = self.styles["cell"]
        data = [[Paragraph(f"<b>{escape(h)}</b>", cell) for h in header]]
        data += [[Paragraph(escape(str(value)), cell) for value in row] for row in rows]
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
        # at most the text width, 70% of the page height, and the natural size of a 150-dpi figure
        scale = min(self.width / width, 0.7 * self.height / height, 72 / 150)
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


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
