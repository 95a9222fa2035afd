"""The evidence report as PDF (ReportLab): reproducible bytes (ReportLab's
invariant mode: no creation time, a fixed document id) and its fonts
embedded (the Bitstream Vera TrueType fonts ReportLab ships), so it renders
the same everywhere and nothing is fetched while rendering."""

from __future__ import annotations

import io
import os
from typing import Any

from collector.report import VERDICTS, Facts
from collector.report.text import sections

FONT, BOLD = "VoipwatchVera", "VoipwatchVeraBold"
COLOURS = {"open": "#2e7d32", "blocked": "#c62828", "throttled": "#ef6c00",
           "inconclusive": "#9e9e9e"}


def _fonts() -> None:
    import reportlab
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    folder = os.path.join(os.path.dirname(reportlab.__file__), "fonts")
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(FONT, os.path.join(folder, "Vera.ttf")))
        pdfmetrics.registerFont(TTFont(BOLD, os.path.join(folder, "VeraBd.ttf")))


def _chart(facts: Facts, width: float) -> Any:
    from reportlab.graphics.shapes import Drawing, Line, Rect, String
    from reportlab.lib import colors

    height, left, bottom = 160.0, 30.0, 24.0
    drawing = Drawing(width, height)
    drawing.initialFontName, drawing.initialFontSize = FONT, 7  # else Helvetica is declared
    if not facts.series:
        drawing.add(String(0, height / 2, "No measurement in this period.", fontName=FONT))
        return drawing
    peak = max(sum(c.values()) for _, c in facts.series) or 1
    step = (width - left) / len(facts.series)
    scale = (height - bottom - 8) / peak
    drawing.add(Line(left, bottom, width, bottom))
    drawing.add(String(0, height - 10, str(peak), fontName=FONT, fontSize=7))
    every = max(1, len(facts.series) // 6)
    for i, (bucket, counts) in enumerate(facts.series):
        x, y = left + i * step, bottom
        for verdict in VERDICTS:
            h = counts[verdict] * scale
            if h:
                drawing.add(Rect(x, y, max(1.0, step * 0.8), h, strokeColor=None,
                                 fillColor=colors.HexColor(COLOURS[verdict])))
                y += h
        if i % every == 0:
            drawing.add(String(x, bottom - 10, bucket, fontName=FONT, fontSize=6))
    for j, verdict in enumerate(VERDICTS):
        drawing.add(Rect(left + j * 90, 2, 7, 7, strokeColor=None,
                         fillColor=colors.HexColor(COLOURS[verdict])))
        drawing.add(String(left + j * 90 + 10, 2, verdict, fontName=FONT, fontSize=7))
    return drawing


def render(facts: Facts) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
    from reportlab.platypus.flowables import Preformatted

    _fonts()
    body = ParagraphStyle("body", fontName=FONT, fontSize=9, leading=12, spaceAfter=4)
    headings = {1: ParagraphStyle("h1", parent=body, fontName=BOLD, fontSize=14, leading=18,
                                  spaceAfter=8),
                2: ParagraphStyle("h2", parent=body, fontName=BOLD, fontSize=11, leading=14,
                                  spaceBefore=8),
                3: ParagraphStyle("h3", parent=body, fontName=BOLD, fontSize=9)}
    # ReportLab's Vera has no monospace face: commands and hashes in the regular one
    code = ParagraphStyle("code", parent=body, fontName=FONT, fontSize=6.5, leading=8,
                          backColor=colors.HexColor("#f4f4f4"))
    cell = ParagraphStyle("cell", parent=body, fontSize=7, leading=8.5, spaceAfter=0)
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, invariant=1, initialFontName=FONT,
                            leftMargin=15 * mm,
                            rightMargin=15 * mm, topMargin=15 * mm, bottomMargin=15 * mm,
                            title=f"VoIP blocking evidence: {facts.scope()}",
                            author="voipwatch", creator="voipwatch", producer="voipwatch")
    flow: list[Any] = []
    for section in sections(facts):
        if section.title:
            flow.append(Paragraph(_esc(section.title), headings[section.level]))
        for paragraph in section.paragraphs:
            flow.append(Paragraph(_esc(paragraph), body))
        if section.table is not None:
            header, rows = section.table
            data = [[Paragraph(_esc(c), cell) for c in row] for row in [header, *rows]]
            table = Table(data, repeatRows=1)
            table.setStyle(TableStyle([
                ("FONTNAME", (0, 0), (-1, -1), FONT),  # the cells' default is Helvetica
                ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#bbbbbb")),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                ("VALIGN", (0, 0), (-1, -1), "TOP")]))
            flow += [table, Spacer(1, 6)]
        if section.chart:
            flow.append(_chart(facts, doc.width))
        for line in section.code:
            flow.append(Preformatted(_wrap(line, 110), code))
    doc.build(flow)
    return buffer.getvalue()


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _wrap(text: str, width: int) -> str:
    return "\n".join(text[i:i + width] for i in range(0, len(text), width)) or " "
