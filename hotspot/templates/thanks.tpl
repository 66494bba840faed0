% rebase("base", title=_("Thank you"))
<h1>{{_("Thank you")}}</h1>
<p>{{_("What you sent is kept safely on this hotspot, locked so only the coalition's team can read it. It will reach them the next time the hotspot has a connection or a USB drive carries it.")}}</p>
<p>{{_("Your receipt code:")}} <strong class="code">{{code}}</strong></p>
<p><small>{{_("Keep it if you want to ask the team about what you sent. It says nothing about you.")}}</small></p>
<p><a class="button" href="/">{{!v.icon("home")}}{{_("Go to the home page")}}</a></p>
