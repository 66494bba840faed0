% rebase("admin_base", title=_("Caretaker console"))
<h1>{{_("Done") if ok else _("Not done")}}</h1>
<p class="{{"verdict ok" if ok else "error"}}" role="status">{{message}}</p>
<p><a class="button" href="/admin">{{_("Back to the status page")}}</a></p>
