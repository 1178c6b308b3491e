"""The inline style sheet of the HTML report (no external CSS: the page is self-contained)."""

from __future__ import annotations

__all__ = ["CSS"]

CSS = """
body{margin:0;background:#eef1f5;color:#1d2733;font:15px/1.5 system-ui,-apple-system,"Segoe UI",
Roboto,Helvetica,Arial,sans-serif}main,header>div{max-width:1180px;margin:0 auto;padding:0 20px}
header{background:#173f5f;color:#fff;padding:24px 0 20px;margin-bottom:22px}
h1{margin:0 0 6px;font-size:26px;overflow-wrap:anywhere}.synthetic{display:inline-block;
margin:0 0 10px;padding:4px 12px;border-radius:6px;background:#d9822b;color:#fff}
h2{margin:0 0 12px;font-size:21px;color:#173f5f}
h3{font-size:16px;margin:18px 0 8px}dl{display:grid;gap:3px 16px;margin:10px 0 0;
grid-template-columns:max-content 1fr}dt{color:#b9cfe2}dd{margin:0}
nav{margin-top:14px;font-size:13px}nav a{color:#d5e6f5;margin-right:14px}
.cards{display:grid;gap:14px;margin:0 0 18px;
grid-template-columns:repeat(auto-fit,minmax(190px,1fr))}
.card{background:#fff;border-radius:10px;padding:14px 16px;box-shadow:0 1px 3px #0002;
border-top:4px solid #20639b}.card b{color:#44556a}.card .value{font-size:34px;font-weight:700;
font-variant-numeric:tabular-nums;line-height:1.25}.card small{display:block;color:#5b6b7d}
section{background:#fff;border-radius:10px;padding:20px 24px;margin:0 0 18px;
box-shadow:0 1px 3px #0002}.callout{background:#e8f3fb;border-left:5px solid #20639b;
padding:12px 16px;border-radius:6px;margin:0 0 18px}.callout.warn{background:#fff4e0;
border-color:#d9822b}.note{color:#5b6b7d;font-style:italic}.row{display:flex;gap:24px;
flex-wrap:wrap;align-items:flex-start}.row>*{flex:1 1 420px}
table{border-collapse:collapse;margin:6px 0 12px;width:100%}th,td{padding:6px 10px;
border-bottom:1px solid #dde3ea;text-align:left;vertical-align:top}th{background:#f1f4f8}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#fafbfc}img.plot{width:100%;height:auto;display:block;
margin:8px 0}.config{display:grid;grid-template-columns:repeat(3,max-content minmax(0,1fr));
gap:2px 12px;font-size:13px}.config dt{color:#5b6b7d}.config dd{overflow-wrap:anywhere}
.badge{display:inline-block;padding:0 7px;border-radius:4px;font-size:12px;font-weight:700;
color:#fff;background:#d9822b}.badge.error{background:#c0392b}.badge.info{background:#20639b}
.gallery{display:grid;gap:14px;grid-template-columns:repeat(auto-fill,minmax(200px,1fr))}.gallery.cam{
grid-template-columns:repeat(auto-fill,minmax(380px,1fr))}figure{margin:0;background:#f7f9fb;
border:1px solid #dde3ea;border-radius:8px;padding:8px}figure div{display:flex;gap:6px}
figure img{width:100%;min-width:0;height:auto;image-rendering:pixelated}
figcaption{font-size:13px;margin-top:4px}figcaption b{display:block;font-size:14px}
.wide{overflow-x:auto;max-width:100%}
@media print{body{background:#fff}section,.card{box-shadow:none;border:1px solid #ccc}}
"""
