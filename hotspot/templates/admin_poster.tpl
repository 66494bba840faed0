% rebase("admin_base", title=_("Invite poster"))
<div class="poster {{size}}">
<h1>{{v.library_title()}}</h1>
<div class="codes">
<figure>{{!poster.wifi_svg}}<figcaption>{{_("Join the Wi-Fi")}}</figcaption></figure>
<figure>{{!poster.url_svg}}<figcaption>{{poster.url}}</figcaption></figure>
</div>
% for code, lines in blocks:
<div class="lines" lang="{{code}}">
% for line in lines:
<p>{{line}}</p>
% end
</div>
% end
</div>
<form class="noprint" method="get" action="/admin/poster">
<p><label for="size">{{_("Size")}}</label>
<select id="size" name="size"><option value="a4"{{!" selected" if size == "a4" else ""}}>{{_("A4 page")}}</option><option value="card"{{!" selected" if size == "card" else ""}}>{{_("Small card")}}</option></select>
<label for="langs">{{_("Languages")}}</label>
<select id="langs" name="langs">
% for choice in [v.lang, "en,es", "en,fr", "en,pt", "es,pt", "en,es,fr,pt"]:
<option value="{{choice}}"{{!" selected" if choice == ",".join(langs) else ""}}>{{", ".join(v.language_name(c) for c in choice.split(","))}}</option>
% end
</select>
<button type="submit">{{_("Show")}}</button></p>
<p><small>{{_("Print this page from the phone's or computer's browser menu.")}}</small></p>
</form>
