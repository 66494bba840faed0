% rebase("base", title=v.error_title(status))
<h1>{{v.error_title(status)}}</h1>
% if detail:
<p>{{detail}}</p>
% end
<p>{{v.error_advice(status)}}</p>
<p><a class="button" href="/">{{!v.icon("home")}}{{_("Go to the home page")}}</a></p>
