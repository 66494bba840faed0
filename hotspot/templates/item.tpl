% title, title_lang = v.text(r, "title")
% summary, summary_lang = v.text(r, "summary")
% kind = v.type_of(r)
<li><a href="/r/{{r.id}}"{{!v.lang_attr(title_lang)}}>{{!v.icon(kind.icon if kind else "file")}}<span>{{title}}</span></a>
% if summary:
<p{{!v.lang_attr(summary_lang)}}>{{v.short(summary)}}</p>
% end
<p class="meta">{{v.label(kind)}} · {{", ".join(v.language_name(code) for code in r.languages)}}{{(" · " + v.size(r.total_size)) if r.files else ""}}</p></li>
