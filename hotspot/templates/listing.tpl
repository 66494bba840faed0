% if query is None:
% rebase("base", title=_("All resources"))
<h1>{{_("All resources")}}</h1>
% else:
% rebase("base", title=_("Search"))
<h1>{{_("Search results")}}</h1>
% end
<details class="filters"{{!"" if filters.active() else " open"}}>
<summary>{{_("Filters")}}{{(" (%d)" % len(filters.active())) if filters.active() else ""}}</summary>
<form action="{{"/browse" if query is None else "/search"}}" method="get">
% if query is not None:
<p><label for="fq">{{_("Words to search for")}}</label>
<input id="fq" name="q" type="search" value="{{query}}" maxlength="{{v.max_query}}"></p>
% end
% for name, label, options in v.filter_choices():
<p><label for="f-{{name}}">{{label}}</label>
<select id="f-{{name}}" name="{{name}}">
<option value="">{{_("Any")}}</option>
% for value, text in options:
<option value="{{value}}"{{!" selected" if getattr(filters, name) == value else ""}}>{{text}}</option>
% end
</select></p>
% end
<p><button type="submit">{{_("Show")}}</button>
% if filters.active():
<a href="{{v.browse_url(v.filters(), query=query)}}">{{_("Clear filters")}}</a>
% end
</p>
</form>
</details>
<p class="count" role="status">{{v.ngettext("%(n)s resource", "%(n)s resources", page.total)}}</p>
% if page.items:
<ul class="list">
% for r in page.items:
% include("item", r=r)
% end
</ul>
% else:
<p>{{_("Nothing matches. Try other words or fewer filters.")}}</p>
% end
% if page.pages > 1:
<nav class="pages" aria-label="{{_("Pages")}}">
% if page.page > 1:
<a rel="prev" href="{{v.browse_url(filters, page.page - 1, query)}}">← {{_("Previous")}}</a>
% end
<span>{{_("Page %(page)s of %(pages)s") % {"page": page.page, "pages": page.pages} }}</span>
% if page.page < page.pages:
<a rel="next" href="{{v.browse_url(filters, page.page + 1, query)}}">{{_("Next")}} →</a>
% end
</nav>
% end
