#!/usr/bin/env python3
"""Renders alert-forwarder's Slack messages to PNG pictures for the documentation
(docs/configuration.md, alert-forwarder).

The messages are the golden files the tests check
(functions/alert-forwarder/tests/snapshots/*.snap), so the pictures show
exactly what the function posts. Each is laid out with a small HTML page
that imitates Slack's message view (Block Kit header, sections, fields,
context; mrkdwn bold, italics, code, links and mentions) and photographed
with headless Chromium.

Usage: tools/slack-pictures.py [OUTPUT_DIR]     (default docs/slack)
Needs: chromium (Debian: apt-get install chromium fonts-noto-color-emoji).
"""

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = ROOT / "functions/alert-forwarder/tests/snapshots"
WIDTH = 760

# picture name -> (snapshot, index of the payload in it, caption)
PICTURES = {
    "alarm": ("render_snapshots__assertible__sns-event.snap", 0,
              "CloudWatch alarm (SNS), OK → ALARM, with SLACK_MENTION"),
    "alarm-ok": ("render_snapshots__notify-slack__messages__cloudwatch_alarm.snap", 0,
                 "CloudWatch alarm back to OK after ALARM"),
    "alarm-metric-math": ("render_snapshots__cloudwatch-docs__alarm-state-change-metric-math.snap", 0,
                          "EventBridge alarm state change, metric math"),
    "alarm-composite": ("render_snapshots__cloudwatch-docs__alarm-state-change-composite-with-suppressor.snap", 0,
                        "EventBridge alarm state change, composite alarm"),
    "refire": ("render_snapshots__refire__still_in_alarm.snap", None,
               "Re-post of an alarm still in ALARM"),
    "ecs-task": ("render_snapshots__lambda-dotnet__ecs-task-state-change-event.snap", 0,
                 "ECS task state change"),
    "kiln-alert": ("render_snapshots__kiln_alert__watchdog_crash_loop.snap", None,
                   "kiln alert from watchdog"),
    "deploy-failed": ("render_snapshots__deployments__deployment__failed_with_log_lines.snap", None,
                      "Failed deployment, with the stack updater's last log lines"),
    "deploy-failed-to-start": ("render_snapshots__deployments__deployment__failed_to_start.snap", None,
                               "Deployment whose task never started"),
    "deploy-succeeded": ("render_snapshots__deployments__deployment__succeeded.snap", None,
                         "Successful deployment (NOTIFY_DEPLOYS=all)"),
    "eventbridge-event": ("render_snapshots__notify-slack__events__guardduty_finding_high.snap", 0,
                          "Other EventBridge event"),
    "json": ("render_snapshots__notify-slack__messages__dms_notification.snap", 0,
             "Other JSON message"),
    "plain-text": ("render_snapshots__notify-slack__messages__text_message.snap", 0,
                   "Plain text message"),
}

CSS = """
body { margin: 0; background: #fff; font-family: 'Lato', 'DejaVu Sans', 'Noto Sans', sans-serif;
       font-size: 15px; line-height: 1.46668; color: #1d1c1d; -webkit-font-smoothing: antialiased; }
.message { display: flex; padding: 12px 20px 14px 20px; width: %(width)dpx; box-sizing: border-box; }
.avatar { flex: 0 0 36px; height: 36px; border-radius: 6px; background: #c0392b; color: #fff;
          font-weight: 900; font-size: 20px; text-align: center; line-height: 36px; margin-right: 8px; }
.body { flex: 1; min-width: 0; }
.meta { margin-bottom: 2px; }
.name { font-weight: 900; }
.badge { font-size: 10px; font-weight: 700; color: #616061; background: #e8e8e8; border-radius: 2px;
         padding: 1px 3px; margin-left: 4px; vertical-align: 1px; }
.time { color: #616061; font-size: 12px; margin-left: 6px; }
.header { font-size: 18px; font-weight: 900; line-height: 1.33; margin: 4px 0 6px 0; }
.section { margin: 4px 0 8px 0; white-space: pre-wrap; word-wrap: break-word; }
.fields { display: grid; grid-template-columns: 1fr 1fr; column-gap: 16px; row-gap: 8px; margin: 4px 0 8px 0; }
.field { white-space: pre-wrap; word-wrap: break-word; min-width: 0; }
.context { color: #616061; font-size: 12px; margin: 6px 0 4px 0; white-space: pre-wrap; }
.context .element { margin-right: 8px; }
.divider { border-top: 1px solid #ddd; margin: 8px 0; }
a { color: #1264a3; text-decoration: none; }
code { font-family: 'DejaVu Sans Mono', monospace; font-size: 12px; color: #e01e5a; background: #f6f6f6;
       border: 1px solid #e1e1e1; border-radius: 3px; padding: 1px 3px; }
pre { font-family: 'DejaVu Sans Mono', monospace; font-size: 12px; line-height: 1.5; background: #f8f8f8;
      border: 1px solid #e1e1e1; border-radius: 4px; padding: 8px; margin: 4px 0; white-space: pre-wrap;
      word-wrap: break-word; }
.mention { background: #fff3bf; color: #1264a3; border-radius: 3px; padding: 0 2px; font-weight: 700; }
.notification { color: #616061; font-size: 11px; padding: 6px 20px 0 64px; font-style: italic; }
"""


def inline(text):
    """Slack mrkdwn (already &amp;/&lt;/&gt;-escaped, which HTML shares) to HTML."""
    out = []
    # Inline code first, so nothing inside it is formatted.
    for i, part in enumerate(re.split(r"(`[^`\n]+`)", text)):
        if i % 2 == 1:
            out.append("<code>%s</code>" % part[1:-1])
            continue
        part = re.sub(r"<(https?://[^|>]+)\|([^>]*)>", r'<a href="\1">\2</a>', part)
        part = re.sub(r"<(https?://[^|>]+)>", r'<a href="\1">\1</a>', part)
        part = re.sub(r"<!(here|channel|everyone)>", r'<span class="mention">@\1</span>', part)
        part = re.sub(r"<!subteam\^[A-Z0-9]+(?:\|([^>]*))?>",
                      lambda m: '<span class="mention">@%s</span>' % (m.group(1) or "team"), part)
        part = re.sub(r"<@([A-Z0-9]+)>", r'<span class="mention">@\1</span>', part)
        part = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"<b>\1</b>", part)
        part = re.sub(r"(?<![\w])_([^_\n]+)_(?![\w])", r"<i>\1</i>", part)
        part = re.sub(r"(?<![\w~])~([^~\n]+)~(?![\w~])", r"<s>\1</s>", part)
        out.append(part)
    return "".join(out)


def mrkdwn(text):
    parts = re.split(r"```\n?(.*?)\n?```", text, flags=re.S)
    out = []
    for i, part in enumerate(parts):
        out.append("<pre>%s</pre>" % part if i % 2 == 1 else inline(part))
    return "".join(out)


def text_object(obj):
    if obj.get("type") == "plain_text":
        # Slack shows &amp; &lt; &gt; in plain text as the characters.
        return html.escape(html.unescape(obj.get("text", "")), quote=False)
    return mrkdwn(obj.get("text", ""))


def block_html(block):
    kind = block.get("type")
    if kind == "header":
        return '<div class="header">%s</div>' % text_object(block["text"])
    if kind == "section":
        parts = []
        if "text" in block:
            parts.append('<div class="section">%s</div>' % text_object(block["text"]))
        if block.get("fields"):
            parts.append('<div class="fields">%s</div>' % "".join(
                '<div class="field">%s</div>' % text_object(f) for f in block["fields"]))
        return "".join(parts)
    if kind == "context":
        return '<div class="context">%s</div>' % "".join(
            '<span class="element">%s</span>' % text_object(e) for e in block["elements"])
    if kind == "divider":
        return '<div class="divider"></div>'
    return '<pre>%s</pre>' % html.escape(json.dumps(block, indent=2))


def page(payload):
    blocks = payload.get("blocks") or []
    content = "".join(block_html(b) for b in blocks) if blocks else \
        '<div class="section">%s</div>' % mrkdwn(payload.get("text", ""))
    notification = html.escape(re.sub(r"<!(\w+)>", r"@\1", payload.get("text", "")).replace("&lt;", "<")
                               .replace("&gt;", ">").replace("&amp;", "&"), quote=False)
    return """<!doctype html><html><head><meta charset="utf-8"><style>%s</style></head>
<body><div id="all"><div class="notification">notification: %s</div>
<div class="message"><div class="avatar">k</div><div class="body">
<div class="meta"><span class="name">kiln</span><span class="badge">APP</span><span class="time">10:04 AM</span></div>
%s</div></div></div>
<script>document.title = String(document.getElementById('all').getBoundingClientRect().height);</script>
</body></html>""" % (CSS % {"width": WIDTH}, notification, content)


def snapshot_payload(name, index):
    text = (SNAPSHOTS / name).read_text()
    body = text.split("---", 2)[2]  # insta: front matter between the first two ---
    value = json.loads(body)
    return value if index is None else value[index]


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    sys.exit("error: chromium not found (Debian: apt-get install chromium fonts-noto-color-emoji)")


def run_chromium(browser, profile, *args):
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--user-data-dir=" + profile, *args],
        check=True, capture_output=True, text=True, timeout=120)


def main():
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs/slack"
    out_dir.mkdir(parents=True, exist_ok=True)
    browser = chromium()
    with tempfile.TemporaryDirectory() as tmp:
        profile = os.path.join(tmp, "profile")
        for picture, (snapshot, index, caption) in PICTURES.items():
            source = Path(tmp) / (picture + ".html")
            source.write_text(page(snapshot_payload(snapshot, index)))
            # First pass: measure the content's height (the page puts it in
            # the title); second pass: a screenshot of exactly that size.
            dom = run_chromium(browser, profile, "--window-size=%d,2000" % WIDTH, "--dump-dom",
                               source.as_uri()).stdout
            match = re.search(r"<title>([\d.]+)</title>", dom)
            height = int(float(match.group(1))) + 8 if match else 1200
            target = out_dir / (picture + ".png")
            run_chromium(browser, profile, "--window-size=%d,%d" % (WIDTH, height),
                         "--screenshot=" + str(target), source.as_uri())
            print("%s  %s" % (target.relative_to(ROOT) if target.is_relative_to(ROOT) else target, caption))


if __name__ == "__main__":
    main()
