% rebase("base", title=_("Report what is happening"))
<h1>{{_("Report what is happening")}}</h1>
<p>{{_("Tell the coalition what happened or what your community needs. You can add photos, a voice recording, a short video or a document.")}}</p>
% include("form_start")
<p><label for="what">{{_("What happened, or what do you need?")}} <small>({{_("needed")}})</small></label>
<textarea id="what" name="what" rows="6" required maxlength="10000"></textarea></p>
<p><label for="place">{{_("Where? (optional)")}}</label><input id="place" name="place" maxlength="300"></p>
<p><label for="when">{{_("When? (optional)")}}</label><input id="when" name="when" maxlength="100"></p>
% if limits.max_files:
<p><label for="files">{{_("Photos, recordings or documents (optional)")}}</label>
<input id="files" name="files" type="file" multiple accept="image/*,audio/*,video/*,application/pdf,text/plain">
<small>{{_("Up to %(n)s files, %(mb)s MB each.") % {"n": limits.max_files, "mb": limits.max_file_mb} }}</small></p>
% end
<p><label for="name">{{_("Your name (optional)")}}</label><input id="name" name="name" maxlength="200" autocomplete="off"></p>
<p><label for="contact">{{_("How can we reach you? (optional)")}}</label><input id="contact" name="contact" maxlength="300" autocomplete="off"></p>
% include("form_end")
