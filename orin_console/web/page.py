"""The page that holds the terminal: textual-serve's script and xterm.js, served from this
machine only (textual-serve's own page pulls a font from the internet; this one uses the
Roboto Mono it ships, so the console works on a machine without internet and tells no third
party it was opened)."""

from __future__ import annotations

import html

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="/static/css/xterm.css">
<script src="/static/js/textual.js"></script>
<style>
@font-face {{ font-family: "Roboto Mono"; src: url("/static/fonts/RobotoMono-VariableFont_wght.ttf"); }}
html, body {{ margin: 0; height: 100%; background: #0c181f; color: #e8eef2;
  font-family: "Roboto Mono", monospace; }}
#terminal {{ position: absolute; inset: 0; opacity: 0; transition: opacity 0.2s; }}
body.-first-byte #terminal {{ opacity: 1; }}
.notice {{ position: absolute; inset: 0; display: flex; align-items: center; justify-content: center;
  flex-direction: column; gap: 16px; }}
body.-first-byte .starting, body.-closed .starting, .ended {{ display: none; }}
body.-closed .ended {{ display: flex; z-index: 10; background: #0c181f; }}
button {{ padding: 12px 28px; background: #2d5b78; color: #fff; border: none; font: inherit; cursor: pointer; }}
#start {{ display: none; }}
</style>
</head>
<body>
<div class="notice starting"><div>{title}: opening a console attached to {target}…</div>
<button type="button" id="start" onclick="location.reload()">Start</button></div>
<div class="notice ended"><div>The console session ended (the server and its models go on; a session that
ends at once could not attach: the log of orin-console web says why).</div>
<button type="button" onclick="location.reload()">Open a new session</button></div>
<div id="terminal" class="textual-terminal" data-session-websocket-url="{websocket}"
 data-font-size="{font_size}"></div>
</body>
</html>
"""


def render_page(*, title: str, target: str, websocket_url: str, font_size: int) -> str:
    """The page, every value escaped."""
    return PAGE.format(title=html.escape(title), target=html.escape(target),
                       websocket=html.escape(websocket_url, quote=True), font_size=int(font_size))
