<!doctype html>
<html lang="{{v.lang}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex">
% if get("refresh"):
<meta http-equiv="refresh" content="{{refresh}}">
% end
<title>{{title}} · {{_("Caretaker console")}}</title>
<link rel="stylesheet" href="{{v.css_url}}">
<link rel="stylesheet" href="{{admin_css}}">
<link rel="icon" href="{{v.icon_url}}" type="image/svg+xml">
</head>
<body class="admin">
<header class="top noprint">
<a class="brand" href="/admin">{{!v.icon("home")}}<span>{{_("Caretaker console")}}</span></a>
<nav class="langs" aria-label="{{_("Language")}}">{{!v.icon("globe")}}
% for code, name in v.ui_languages:
% if code == v.lang:
<strong aria-current="true">{{name}}</strong>
% else:
<a href="/lang/{{code}}?next={{v.next_param}}" lang="{{code}}" hreflang="{{code}}">{{name}}</a>
% end
% end
</nav>
</header>
<main id="main">
{{!base}}
</main>
<footer class="noprint">
<nav><a href="/">{{_("The library")}}</a>
% if get("logged_in"):
 · <a href="/admin">{{_("Status")}}</a> · <a href="/admin/poster">{{_("Invite poster")}}</a>
% end
</nav>
% if get("logged_in") and get("token"):
<form class="inline" method="post" action="/admin/logout"><input type="hidden" name="csrf" value="{{token}}"><button type="submit">{{_("Log out")}}</button></form>
% end
</footer>
</body>
</html>
