% rebase("base", title=_("Home"))
<section class="intro">
<h1>{{_("Protecting our communities together")}}</h1>
<p>{{_("Collective protection keeps the whole community safe, not only its leaders: early warning networks, patrols, community radio, mapping our territory, documenting what happens, and knowing our rights.")}}</p>
<p>{{_("Here you can read, watch, listen to and download guides and tools shared by communities and their allies. Everything works on this hotspot, without internet.")}}</p>
</section>
<section>
<h2>{{_("Browse by theme")}}</h2>
<ul class="tiles">
% for entry in v.catalog.taxonomy.themes.values():
<li><a href="{{v.browse_url(v.filters(theme=entry.id))}}">{{!v.icon(entry.icon)}}<span>{{v.label(entry)}}</span> <small>{{v.catalog.count("theme", entry.id)}}</small></a></li>
% end
</ul>
</section>
<section>
<h2>{{_("Browse by type")}}</h2>
<ul class="tiles">
% for entry in v.catalog.taxonomy.types.values():
<li><a href="{{v.browse_url(v.filters(type=entry.id))}}">{{!v.icon(entry.icon)}}<span>{{v.label(entry)}}</span> <small>{{v.catalog.count("type", entry.id)}}</small></a></li>
% end
</ul>
</section>
% if v.catalog.taxonomy.strands:
<section>
<h2>{{_("What communities told us")}}</h2>
<ul class="strands">
% for entry in v.catalog.taxonomy.strands.values():
% desc, desc_lang = v.localize(entry.description)
<li><a href="{{v.browse_url(v.filters(strand=entry.id))}}"><strong>{{v.label(entry)}}</strong></a>
% if desc:
<span{{!v.lang_attr(desc_lang)}}>{{desc}}</span>
% end
</li>
% end
</ul>
</section>
% end
<section>
<h2>{{_("Newest additions")}}</h2>
% if newest:
<ul class="list">
% for r in newest:
% include("item", r=r)
% end
</ul>
<p><a class="button" href="/browse">{{_("See all resources")}}</a></p>
% else:
<p>{{_("The library is empty. Plug in a USB drive with an update pack to add resources.")}}</p>
% end
</section>
