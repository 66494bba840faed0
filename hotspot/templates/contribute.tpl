% rebase("base", title=_("Share with the coalition"))
<h1>{{_("Share with the coalition")}}</h1>
<p>{{_("Your knowledge protects other communities too. Choose what you want to send:")}}</p>
<ul class="tiles">
<li><a href="/contribute/report">{{!v.icon("megaphone")}}<span>{{_("Report what is happening")}}</span></a></li>
<li><a href="/contribute/suggestion">{{!v.icon("book")}}<span>{{_("Suggest a resource")}}</span></a></li>
<li><a href="/contribute/message">{{!v.icon("handshake")}}<span>{{_("Send a message")}}</span></a></li>
</ul>
% include("privacy_note")
