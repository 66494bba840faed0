% rebase("base", title=_("Welcome"))
<section class="portal">
% for code, texts in blocks:
<div class="portal-lang" lang="{{code}}">
<h2>{{texts[0]}}</h2>
<p>{{texts[1]}}</p>
<p class="portal-address"><strong>{{address}}</strong></p>
<p>{{texts[2]}}</p>
</div>
% end
<p class="portal-go"><a class="button" href="{{continue_url}}">{{!v.icon("book")}} {{_("Open the library")}}</a></p>
</section>
