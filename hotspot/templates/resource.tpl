% title, title_lang = v.text(r, "title")
% rebase("base", title=title)
% summary, summary_lang = v.text(r, "summary")
% description, description_lang = v.text(r, "description")
% kind = v.type_of(r)
<article class="resource">
<p class="chips"><a href="{{v.browse_url(v.filters(type=r.type))}}">{{!v.icon(kind.icon if kind else "file")}}{{v.label(kind)}}</a>
% for theme_id in r.themes:
% theme = v.theme(theme_id)
<a href="{{v.browse_url(v.filters(theme=theme_id))}}">{{!v.icon(theme.icon if theme else "file")}}{{v.label(theme)}}</a>
% end
</p>
<h1{{!v.lang_attr(title_lang)}}>{{title}}</h1>
% if title_lang != v.lang or (summary and summary_lang != v.lang):
<p class="note">{{_("This resource is not translated into your language yet; it is shown in %(language)s.") % {"language": v.language_name(title_lang if title_lang != v.lang else summary_lang)} }}</p>
% end
% if summary:
<p class="lead"{{!v.lang_attr(summary_lang)}}>{{summary}}</p>
% end
% if r.files:
<h2>{{_("Files")}}</h2>
<ul class="files">
% for f in r.files:
<li>
% if f.kind == "audio":
<audio controls preload="none" src="{{v.media_url(f.sha256, f.name)}}"></audio>
% elif f.kind == "video":
<video controls preload="none" src="{{v.media_url(f.sha256, f.name)}}"{{!(' poster="%s"' % v.media_url(r.thumbnail, "poster")) if r.thumbnail else ""}}></video>
% elif f.kind == "image":
<img src="{{v.media_url(f.sha256, f.name)}}" alt="{{title}}" loading="lazy">
% elif f.kind == "pdf":
<p><a href="{{v.media_url(f.sha256, f.name)}}">{{!v.file_icon(f.kind)}}{{_("Open to read")}}</a></p>
% end
<p class="file"><span>{{!v.file_icon(f.kind)}}{{f.name}}</span> <small>{{v.file_summary(f)}}{{(" · " + v.language_name(f.language)) if f.language else ""}}</small></p>
<p><a class="button" href="{{v.media_url(f.sha256, f.name, download=True)}}" download>{{!v.icon("download")}}{{_("Download")}} <small>({{v.size(f.size)}})</small></a></p>
</li>
% end
</ul>
% end
% if r.link:
<p><a class="out" href="{{r.link}}" rel="noopener noreferrer external">{{!v.icon("external")}}{{_("Original web page (needs internet, leaves the hotspot)")}}</a></p>
% end
% if description:
<h2>{{_("About this resource")}}</h2>
<div{{!v.lang_attr(description_lang)}}>
% for paragraph in v.paragraphs(description):
<p>{{paragraph}}</p>
% end
</div>
% end
<h2>{{_("Details")}}</h2>
<dl class="details">
% strand = v.strand(r.strand)
% if strand:
<dt>{{_("Strand")}}</dt><dd><a href="{{v.browse_url(v.filters(strand=r.strand))}}">{{v.label(strand)}}</a></dd>
% end
<dt>{{_("Languages")}}</dt><dd>{{", ".join(v.language_name(code) for code in r.languages)}}</dd>
% if r.publisher:
<dt>{{_("Publisher")}}</dt><dd>{{r.publisher}}</dd>
% end
% if r.year:
<dt>{{_("Year")}}</dt><dd>{{r.year}}</dd>
% end
% if r.region or r.countries:
<dt>{{_("Region")}}</dt><dd>{{", ".join([x for x in [r.region] + list(r.countries) if x])}}</dd>
% end
% if r.licence:
<dt>{{_("Licence")}}</dt><dd>{{r.licence}}</dd>
% end
% if r.added:
<dt>{{_("Added to the library")}}</dt><dd>{{v.day(r.added)}}</dd>
% end
% if r.tags:
<dt>{{_("Keywords")}}</dt><dd>{{", ".join(r.tags)}}</dd>
% end
</dl>
% if r.demo:
<p class="note">{{_("This is demo content, made to show how the library works.")}}</p>
% end
<p><a class="button" href="/r/{{r.id}}/feedback">{{!v.icon("handshake")}}{{_("Was this useful? Tell us")}}</a></p>
</article>
