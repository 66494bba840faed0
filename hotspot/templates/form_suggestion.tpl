% rebase("base", title=_("Suggest a resource"))
<h1>{{_("Suggest a resource")}}</h1>
<p>{{_("Do you know a guide, a video, a tool or a story that has helped protect a community? Tell us about it.")}}</p>
% include("form_start")
<p><label for="title">{{_("Its name")}} <small>({{_("needed")}})</small></label><input id="title" name="title" required maxlength="300"></p>
<p><label for="link">{{_("Web link (optional)")}}</label><input id="link" name="link" maxlength="2000" inputmode="url"></p>
% if limits.max_files:
<p><label for="files">{{_("Or the file itself (optional)")}}</label><input id="files" name="files" type="file"></p>
% end
<p><label for="why">{{_("Why is it useful?")}} <small>({{_("needed")}})</small></label><textarea id="why" name="why" rows="5" required maxlength="5000"></textarea></p>
<p><label for="language">{{_("Its language (optional)")}}</label><input id="language" name="language" maxlength="40"></p>
<p><label for="theme">{{_("Theme (optional)")}}</label>
<select id="theme" name="theme"><option value="">–</option>
% for value, text in v.filter_choices()[1][2]:
<option value="{{value}}">{{text}}</option>
% end
</select></p>
<p><label for="name">{{_("Your name (optional)")}}</label><input id="name" name="name" maxlength="200" autocomplete="off"></p>
<p><label for="contact">{{_("How can we reach you? (optional)")}}</label><input id="contact" name="contact" maxlength="300" autocomplete="off"></p>
% include("form_end")
