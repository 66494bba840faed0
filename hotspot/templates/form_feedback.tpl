% title, title_lang = v.text(resource, "title")
% rebase("base", title=_("Was this useful?"))
<h1>{{_("Was this useful?")}}</h1>
<p><a href="/r/{{resource.id}}"{{!v.lang_attr(title_lang)}}>{{title}}</a></p>
% include("form_start")
<fieldset class="choice"><legend>{{_("Your answer")}} <small>({{_("needed")}})</small></legend>
<p><input id="yes" type="radio" name="useful" value="yes" required><label for="yes">{{_("Yes, useful")}}</label></p>
<p><input id="no" type="radio" name="useful" value="no"><label for="no">{{_("No, not useful")}}</label></p>
</fieldset>
<p><label for="comment">{{_("Tell us more (optional)")}}</label><textarea id="comment" name="comment" rows="4" maxlength="5000"></textarea></p>
% include("form_end")
