% rebase("base", title=_("Send a message"))
<h1>{{_("Send a message")}}</h1>
<p>{{_("Write to the coalition's team: a question, an idea, a request for training or equipment.")}}</p>
% include("form_start")
<p><label for="subject">{{_("Subject (optional)")}}</label><input id="subject" name="subject" maxlength="300"></p>
<p><label for="message">{{_("Your message")}} <small>({{_("needed")}})</small></label><textarea id="message" name="message" rows="7" required maxlength="10000"></textarea></p>
<p><label for="name">{{_("Your name (optional)")}}</label><input id="name" name="name" maxlength="200" autocomplete="off"></p>
<p><label for="reply">{{_("How can we answer you? (optional)")}}</label><input id="reply" name="reply" maxlength="300" autocomplete="off"></p>
% include("form_end")
