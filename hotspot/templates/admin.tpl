% rebase("admin_base", title=_("Status"))
% lib = status["library"]; h = status["health"]; c = status["contributions"] or {}; last = lib.get("last_import") or {}
<h1>{{_("Status")}}</h1>
% if status["verdict"] == "ok":
<p class="verdict ok" role="status">{{_("All good")}}</p>
% else:
<div class="verdict attention" role="status">{{_("Needs attention")}}</div>
<ul class="problems">
% for p in status["problems"]:
<li><strong>{{(_(p["template"]) % p["params"]) if p["params"] else _(p["template"])}}</strong> <span>{{_(p["advice"])}}</span></li>
% end
</ul>
% end

<h2>{{_("Library")}}</h2>
% if last.get("state") == "running":
<p class="big">{{_("Updating the library…")}}</p>
<progress max="{{max(1, last.get("bytes_total") or 0)}}" value="{{last.get("bytes_done") or 0}}">{{int(100 * (last.get("bytes_done") or 0) / max(1, last.get("bytes_total") or 0))}} %</progress>
<p>{{_("%(done)s of %(total)s files copied") % {"done": last.get("files_done", 0), "total": last.get("files_total", 0)} }}. <small>{{_("This page refreshes by itself.")}}</small></p>
% end
<dl class="facts">
% if lib.get("version") is None:
<dt>{{_("Installed")}}</dt><dd>{{_("No library is installed.")}}</dd>
% else:
<dt>{{_("Installed")}}</dt><dd>{{lib.get("library")}} · {{_("version %(version)s") % {"version": lib["version"]} }}{{" · " + _("demo") if lib.get("demo") else ""}}</dd>
<dt>{{_("Resources")}}</dt><dd>{{lib.get("resources", 0)}}</dd>
% end
<dt>{{_("Last update")}}</dt>
% if last:
<dd>{{last.get("updated", "")}} · {{ {"done": _("finished"), "failed": _("did not finish"), "running": _("running")}.get(last.get("state"), last.get("state")) }}<br><small>{{_("from")}} {{last.get("pack", "")}}</small></dd>
% else:
<dd>{{_("None yet")}}</dd>
% end
<dt>{{_("Previous version")}}</dt><dd>{{_("version %(version)s, ready to go back to") % {"version": lib["previous"]["version"]} if lib.get("previous") else _("none")}}</dd>
</dl>

<h2>{{_("USB drive")}}</h2>
% usb = status.get("usb")
% current = (usb or {}).get("current") or {}
% if usb is None:
<p>{{_("USB drives are not handled by this hotspot's software yet.")}}</p>
% else:
% if current.get("state") not in ("idle", None):
<p>{{current.get("message") or current.get("state")}}</p>
% if (current.get("progress") or {}).get("text"):
<p><small>{{current["progress"]["text"]}}</small></p>
% end
% end
<p class="big">{{_("Safe to remove") if usb.get("safe_to_remove") else _("Do not remove the drive yet")}}</p>
% if not usb.get("watcher_running"):
<p><small>{{_("The USB service is not running.")}}</small></p>
% end
% end

<h2>{{_("Contributions")}}</h2>
% counts = c.get("counts") or {}
<dl class="facts">
<dt>{{_("Waiting to be sent")}}</dt><dd>{{counts.get("queued", 0)}}</dd>
<dt>{{_("On a USB drive, not yet confirmed")}}</dt><dd>{{counts.get("exported", 0)}}</dd>
<dt>{{_("Received by the coalition")}}</dt><dd>{{counts.get("delivered", 0)}}</dd>
% if c.get("oldest_undelivered_days") is not None:
<dt>{{_("Oldest waiting")}}</dt><dd>{{v.ngettext("%(n)s day", "%(n)s days", c["oldest_undelivered_days"])}}</dd>
% end
<dt>{{_("Last sync")}}</dt>
% sync = status.get("sync")
% if sync is None:
<dd>{{_("Sync is not part of this hotspot's software yet.")}}</dd>
% else:
<dd>{{sync.get("last_run") or _("None yet")}}{{" · " + _("worked") if sync.get("last_run") and not sync.get("last_error") else ""}}
% if sync.get("last_error"):
<br><small>{{_("did not work:")}} {{sync["last_error"]}}</small>
% end
</dd>
% end
</dl>

<h2>{{_("The Pi's health")}}</h2>
<dl class="facts">
% if h.get("disk"):
<dt>{{_("Free storage")}}</dt><dd>{{v.size(h["disk"]["free"])}} / {{v.size(h["disk"]["total"])}}</dd>
% end
% if h.get("content_size") is not None:
<dt>{{_("Library files")}}</dt><dd>{{v.size(h["content_size"])}}</dd>
% end
<dt>{{_("Memory used")}}</dt><dd>{{int(h["memory"]["used_percent"])}} %</dd>
% if h.get("load"):
<dt>{{_("Processor load")}}</dt><dd>{{h["load"]["1min"]}} ({{v.ngettext("%(n)s core", "%(n)s cores", h["load"]["cpus"])}})</dd>
% end
% if h.get("cpu_temperature"):
<dt>{{_("Temperature")}}</dt><dd>{{h["cpu_temperature"]["celsius"]}} °C</dd>
% end
% if h.get("power"):
<dt>{{_("Power supply")}}</dt><dd>{{_("Too weak") if (h["power"].get("under_voltage_now") or h["power"].get("under_voltage_since_boot")) else _("Good")}}</dd>
% end
% if h.get("uptime_seconds") is not None:
<dt>{{_("Running for")}}</dt><dd>{{v.ngettext("%(n)s hour", "%(n)s hours", h["uptime_seconds"] // 3600)}}</dd>
% end
% if h.get("phones"):
<dt>{{_("Phones connected now")}}</dt><dd>{{h["phones"]["count"]}} / {{h["phones"]["limit"]}}</dd>
% end
<dt>{{_("Software version")}}</dt><dd>{{h["version"]}}</dd>
</dl>
% if h.get("missing"):
<p><small>{{_("Not measured on this device:")}} {{", ".join(h["missing"])}}</small></p>
% end

<h2>{{_("What people use")}}</h2>
% u = status["usage"]
<p>{{_("Last %(days)s days: %(views)s pages read, %(plays)s plays, %(downloads)s downloads, %(searches)s searches.") % {"days": u["days"], "views": u["view"], "plays": u["play"], "downloads": u["download"], "searches": u["searches"]} }}</p>
% if u["top_resources"]:
<ol>
% for row in u["top_resources"]:
% r = v.catalog.by_id.get(row["id"])
<li>{{v.text(r, "title")[0] if r else row["id"]}} <small>({{row["total"]}})</small></li>
% end
</ol>
% end
% if u["top_themes"]:
<p>{{_("Themes:")}} {{", ".join(v.label(v.theme(row["id"])) or row["id"] for row in u["top_themes"])}}</p>
% end
<p><small>{{_("Only numbers are counted, never who read what.")}}</small></p>

<h2>{{_("Actions")}}</h2>
<div class="actions">
% for name, label in (("sync", _("Sync now")), ("export", _("Export contributions to the USB drive")), ("rollback", _("Go back to the previous library")), ("restart", _("Restart the hotspot"))):
<form method="post" action="/admin/action/{{name}}"><input type="hidden" name="csrf" value="{{token}}"><button type="submit">{{label}}</button></form>
% end
</div>
% if last:
<p><a href="/admin/import-report">{{_("Download the last update's report")}}</a></p>
% end
<p><a href="/admin/poster">{{_("Print an invite poster")}}</a> · <a href="/admin/status.json">JSON</a></p>
