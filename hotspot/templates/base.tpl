<!doctype html>
<html lang="{{v.lang}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{title}} · {{v.library_title()}}</title>
<link rel="stylesheet" href="{{v.css_url}}">
<link rel="icon" href="{{v.icon_url}}" type="image/svg+xml">
</head>
<body>
<a class="skip" href="#main">{{_("Skip to content")}}</a>
<header class="top">
<a class="brand" href="/">{{!v.icon("home")}}<span>{{v.library_title()}}</span></a>
<nav class="langs" aria-label="{{_("Language")}}">{{!v.icon("globe")}}
% for code, name in v.ui_languages:
% if code == v.lang:
<strong aria-current="true">{{name}}</strong>
% else:
<a href="/lang/{{code}}?next={{v.next_param}}" lang="{{code}}" hreflang="{{code}}">{{name}}</a>
% end
% end
</nav>
<form class="search" action="/search" method="get" role="search">
<label for="q" class="vh">{{_("Search the library")}}</label>
<input id="q" name="q" type="search" value="{{get("query") or ""}}" placeholder="{{_("Search the library")}}" maxlength="{{v.max_query}}">
<button type="submit">{{!v.icon("search")}}<span>{{_("Search")}}</span></button>
</form>
</header>
% if v.catalog.library.get("demo"):
<p class="demo">{{_("Demo library, made to try the hotspot. Resources marked as demo are examples, not real guidance.")}}</p>
% end
<main id="main">
{{!base}}
</main>
<footer>
<nav><a href="/">{{_("Home")}}</a> · <a href="/browse">{{_("All resources")}}</a> · <a href="/contribute">{{_("Share with the coalition")}}</a> · <a href="/about">{{_("About")}}</a></nav>
<p>{{_("This hotspot keeps no record of who visits or what they read.")}}</p>
</footer>
</body>
</html>
