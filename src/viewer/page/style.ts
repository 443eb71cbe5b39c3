/** The viewer page's style sheet (served as /app.css: the Content-Security-Policy allows no inline style). */
export const PAGE_STYLE = String.raw`
:root {
  --ok: #1e7e34; --ok-bg: #e6f4ea; --bad: #b3261e; --bad-bg: #fdecea; --warn: #8a5a00; --warn-bg: #fff4d6;
  --muted: #5f6368; --line: #dadce0; --bg: #fafafa; --fg: #202124; --accent: #1a56b8;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; font-size: 14px;
  color: var(--fg); background: var(--bg);
}
body { margin: 0; }
.top { display: flex; align-items: center; gap: 1em; padding: 0.6em 1.2em; background: #202124; color: #fff; position: sticky; top: 0; z-index: 2; }
.top h1 { font-size: 1.15em; margin: 0; font-weight: 600; }
.top .source { color: #bdc1c6; font-family: ui-monospace, monospace; font-size: 0.9em; flex: 1; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.live { font-size: 0.85em; color: #bdc1c6; }
.live.on::before { content: "\25CF  "; color: #5bd07a; }
.live.off::before { content: "\25CB  "; color: #f28b82; }
main { padding: 0.8em 1.2em 3em; }
button { font: inherit; padding: 0.25em 0.8em; border: 1px solid var(--line); background: #fff; border-radius: 4px; cursor: pointer; }
button:hover { border-color: var(--accent); }
button:disabled { opacity: 0.5; cursor: default; }
.status p { margin: 0.4em 0; color: var(--muted); }
.status .error { color: var(--bad); font-weight: 600; }
.verdicts { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 0.8em; margin-bottom: 1em; }
.verdict { background: #fff; border: 1px solid var(--line); border-left: 6px solid var(--ok); border-radius: 6px; padding: 0.6em 0.9em; }
.verdict.bad { border-left-color: var(--bad); background: var(--bad-bg); }
.verdict.warn { border-left-color: #e0a800; }
.verdict h2 { font-size: 1em; margin: 0 0 0.3em; display: flex; gap: 0.6em; align-items: baseline; flex-wrap: wrap; }
.verdict p, .verdict dd { overflow-wrap: anywhere; }
.verdict .path { color: var(--muted); font-family: ui-monospace, monospace; font-size: 0.8em; word-break: break-all; }
.verdict p { margin: 0.2em 0; }
.verdict .first-bad { color: var(--bad); font-weight: 600; }
.verdict dl { margin: 0.3em 0 0; display: grid; grid-template-columns: max-content 1fr; gap: 0.1em 0.8em; font-size: 0.9em; }
.verdict dt { color: var(--muted); }
.verdict dd { margin: 0; word-break: break-all; font-family: ui-monospace, monospace; font-size: 0.95em; }
.badge { display: inline-block; font-size: 0.78em; font-weight: 700; padding: 0.05em 0.5em; border-radius: 3px; letter-spacing: 0.02em; white-space: nowrap; }
.badge.ok { background: var(--ok-bg); color: var(--ok); }
.badge.bad { background: var(--bad); color: #fff; }
.badge.warn { background: var(--warn-bg); color: var(--warn); }
.badge.muted { background: #eee; color: var(--muted); }
.filters { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 0.5em 0.8em; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 0.7em 0.9em; margin-bottom: 1em; }
.filters label { display: flex; flex-direction: column; font-size: 0.82em; color: var(--muted); gap: 0.15em; }
.filters label.wide { grid-column: span 2; }
.filters input, .filters select { font: inherit; font-size: 1.05em; color: var(--fg); padding: 0.25em 0.4em; border: 1px solid var(--line); border-radius: 4px; min-width: 0; }
.filters .buttons { display: flex; align-items: end; gap: 0.4em; }
.charts { display: grid; grid-template-columns: 2fr 1fr 1fr; gap: 0.8em; margin-bottom: 1em; }
.charts figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 0.6em 0.8em; min-width: 0; }
.charts figcaption { font-weight: 600; margin-bottom: 0.4em; }
.charts svg { width: 100%; height: auto; display: block; }
.charts svg .bar { cursor: pointer; }
.charts svg text { font-size: 11px; fill: var(--muted); }
.legend { list-style: none; padding: 0; margin: 0.4em 0 0; display: flex; flex-wrap: wrap; gap: 0.3em 1em; font-size: 0.85em; }
.legend li { display: flex; align-items: center; gap: 0.3em; }
.legend svg { width: 12px; height: 12px; }
.busiest ol { list-style: none; padding: 0; margin: 0; }
.busiest li { display: grid; grid-template-columns: 1fr auto; gap: 0 0.5em; margin: 0 0 0.35em; cursor: pointer; font-size: 0.9em; }
.busiest li .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.busiest li .n { color: var(--muted); font-variant-numeric: tabular-nums; }
.busiest li svg { grid-column: 1 / span 2; height: 6px; }
.pager { display: flex; align-items: center; gap: 1em; margin: 0.4em 0; }
.pager-buttons { margin-left: auto; display: flex; gap: 0.4em; align-items: center; }
.fresh { background: var(--accent); color: #fff; padding: 0.1em 0.6em; border-radius: 10px; cursor: pointer; font-size: 0.85em; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; vertical-align: top; padding: 0.35em 0.55em; border-bottom: 1px solid var(--line); }
th { background: #f1f3f4; font-size: 0.85em; position: sticky; top: 2.6em; z-index: 1; }
tbody tr { cursor: pointer; }
tbody tr:hover { background: #f5f8ff; }
tbody tr.selected { outline: 2px solid var(--accent); outline-offset: -2px; }
tr.state-bad { background: var(--bad-bg); }
tr.state-bad td:first-child { border-left: 5px solid var(--bad); }
tr.state-unverified { background: #f4f4f4; color: #6b6b6b; }
tr.state-unverified td:first-child { border-left: 5px dashed var(--bad); }
tr.state-unverified td:not(:first-child) { font-style: italic; }
tr.state-uncovered td:first-child { border-left: 5px solid #e0a800; }
.mono, .digest { font-family: ui-monospace, monospace; font-size: 0.88em; }
.sub { display: block; color: var(--muted); font-size: 0.85em; }
.sub.trace { cursor: pointer; text-decoration: underline dotted; }
.tag { display: inline-block; font-size: 0.75em; padding: 0 0.4em; border-radius: 3px; background: #eee; color: var(--muted); margin-left: 0.3em; }
.tag.claimed { background: var(--warn-bg); color: var(--warn); font-weight: 700; }
.tag.verified { background: var(--ok-bg); color: var(--ok); }
.tag.one-side { background: var(--warn-bg); color: var(--warn); }
.decision-deny { color: var(--bad); font-weight: 600; }
.decision-allow { color: var(--ok); font-weight: 600; }
.detail { margin-top: 1em; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 0.8em 1em; }
.detail h2 { margin: 0 0 0.5em; font-size: 1.1em; display: flex; gap: 1em; align-items: baseline; }
.detail h3 { font-size: 1em; margin: 1em 0 0.4em; border-top: 1px solid var(--line); padding-top: 0.8em; }
.detail h4 { font-size: 0.95em; margin: 0.8em 0 0.3em; }
.detail table { font-size: 0.9em; }
.detail td.key { color: var(--muted); white-space: nowrap; width: 1%; }
.detail td.value { font-family: ui-monospace, monospace; word-break: break-all; white-space: pre-wrap; }
.detail pre { background: #f6f8fa; padding: 0.6em; border-radius: 4px; overflow: auto; max-height: 24em; font-size: 0.85em; white-space: pre-wrap; word-break: break-all; }
.check { margin: 0.3em 0; }
.check.ok { color: var(--ok); }
.check.bad { color: var(--bad); font-weight: 600; }
.check.none { color: var(--warn); }
.agree-no { color: var(--bad); font-weight: 700; }
.agree-yes { color: var(--ok); }
.empty { color: var(--muted); padding: 1em; text-align: center; }
@media (max-width: 1100px) { .charts { grid-template-columns: 1fr; } }
`;
